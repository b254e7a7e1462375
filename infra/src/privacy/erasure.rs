//! Deleting an account erases the person (GDPR art. 17): one transaction appends `UserDeleted`,
//! releases the email and destroys the personal data key. The ledger keeps every event; what
//! was personal in them reads as placeholders from then on, for every reader and every replay.

use domain::{
    Context, UserId,
    users::{User, UserCommand, decide},
};

use crate::ledger::{Appended, CommandError, EventMetadata, Ledger};

/// Delete account `user_id` as `ctx`'s actor (the user, an admin, or an operator as the system
/// actor) and erase the person.
pub async fn erase_account(
    ledger: &Ledger,
    user_id: UserId,
    metadata: EventMetadata,
    ctx: &Context,
) -> Result<Appended, CommandError> {
    let stream = user_id.as_uuid();
    ledger
        .execute_with(metadata, async |unit| {
            let user = unit.load::<User>(stream).await?;
            let events = decide(&user, &UserCommand::DeleteAccount, ctx)?;
            unit.write::<User>(stream, &events)?;
            if let Some(registered) = &user.registered {
                unit.release("email", registered.email.as_str().to_owned());
            }
            unit.erase(stream);
            Ok(())
        })
        .await
}
