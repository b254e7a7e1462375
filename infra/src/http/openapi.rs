//! OpenAPI documents (`GET /openapi.json`, DESIGN §3): shared schemas and the bearer scheme.

use axum::{Json, Router, routing::get};
use utoipa::{
    Modify, ToSchema,
    openapi::{
        OpenApi,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

/// A currency (ISO 4217 code) as it appears in requests and answers.
#[derive(ToSchema)]
#[schema(as = Currency)]
pub enum CurrencySchema {
    /// US dollar.
    #[schema(rename = "USD")]
    Usd,
    /// Euro.
    #[schema(rename = "EUR")]
    Eur,
    /// Pound sterling.
    #[schema(rename = "GBP")]
    Gbp,
}

/// Money in an answer: integer minor units and an ISO 4217 code.
#[derive(ToSchema)]
#[schema(as = Money)]
pub struct MoneySchema {
    /// Amount in minor units (cents), e.g. 150000 for 1,500.00.
    pub minor: i64,
    /// Currency.
    pub currency: CurrencySchema,
}

/// One invalid field of a validation problem.
#[derive(ToSchema)]
#[schema(as = FieldError)]
pub struct FieldErrorSchema {
    /// Path of the field, e.g. `budget.minor`.
    pub field: String,
    /// Why it is invalid.
    pub message: String,
}

/// The schema of a string of `min..=max` characters, optionally matching `pattern` (for the
/// newtypes of request items, which the derive cannot bound).
pub fn bounded_string(
    min: usize,
    max: usize,
    pattern: Option<&str>,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min))
        .max_length(Some(max))
        .pattern(pattern)
        .into()
}

/// The optional `Idempotency-Key` header of every write (DESIGN §3).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// Makes the write safe to retry: the same key and request within 24 h get the first answer
    /// again and change nothing; the same key with another request is a 422.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 255,
        pattern = r"^[!-~]+$"
    )]
    pub idempotency_key: Option<String>,
}

/// The problem answers every authenticated write can give besides its success.
pub struct WriteProblems;

impl utoipa::IntoResponses for WriteProblems {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>> {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        [
            ("400", "invalid input: `errors` names each bad field"),
            ("401", "missing, malformed or expired bearer token"),
            ("403", "not yours, or not your role"),
            ("404", "no such resource"),
            (
                "409",
                "the resource's state does not allow this, or it changed concurrently",
            ),
            ("413", "body too large"),
            ("415", "not application/json"),
            ("422", "Idempotency-Key reused with another request"),
            (
                "429",
                "an earlier request with this Idempotency-Key is still running (Retry-After)",
            ),
            ("503", "database unavailable (Retry-After)"),
        ]
        .into_iter()
        .map(|(status, description)| {
            let problem = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build();
            let response = ResponseBuilder::new()
                .description(description)
                .content("application/problem+json", problem)
                .build();
            (status.to_owned(), response.into())
        })
        .collect()
    }
}

/// Adds the `bearer` security scheme (HS256 JWT from `POST /api/v1/users/login`).
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The route `GET /openapi.json` serving `document`, and the browsable page `GET /docs` over
/// it, titled with the document's title (see [`super::docs`]).
pub fn router(document: OpenApi) -> Router {
    let docs = super::docs::router(&document.info.title);
    let document = std::sync::Arc::new(document);
    Router::new()
        .route(
            "/openapi.json",
            get(move || async move { Json(document.as_ref().clone()) }),
        )
        .merge(docs)
}
