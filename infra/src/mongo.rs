//! MongoDB: the connection to the read-model database. The collections and their documents
//! live with their contexts in [`crate::read_models`] (e.g. [`crate::read_models::users`]).

use mongodb::{Client, Database, options::ClientOptions};
use std::time::Duration;

use crate::{config::MongoConfig, store::StoreError};

/// Connect to the read-model database.
pub async fn connect(config: &MongoConfig) -> Result<Database, StoreError> {
    let mut options = ClientOptions::parse(&config.url).await?;
    options.app_name = Some("workup".into());
    options.server_selection_timeout = Some(Duration::from_secs(5));
    options.connect_timeout = Some(Duration::from_secs(5));
    Ok(Client::with_options(options)?.database(&config.database))
}
