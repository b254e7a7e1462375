//! OpenAPI documents (`GET /openapi.json`, DESIGN §3): shared schemas and the bearer scheme.

use axum::{Json, Router, routing::get};
use utoipa::{
    Modify, ToSchema,
    openapi::{
        OpenApi,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

/// Money in a request or an answer: integer minor units and an ISO 4217 code.
#[derive(ToSchema)]
#[schema(as = Money)]
pub struct MoneySchema {
    /// Amount in minor units (cents), e.g. 150000 for 1,500.00.
    pub minor: i64,
    /// Currency: USD, EUR or GBP.
    pub currency: String,
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

/// The route `GET /openapi.json` serving `document`.
pub fn router(document: OpenApi) -> Router {
    let document = std::sync::Arc::new(document);
    Router::new().route(
        "/openapi.json",
        get(move || async move { Json(document.as_ref().clone()) }),
    )
}
