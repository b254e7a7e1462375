//! Given / when / then for every user command and rule.

use super::*;
use crate::testing::*;
use crate::{Actor, ProfileItemId};
use uuid::Uuid;

const ITEM: ProfileItemId = ProfileItemId::from_uuid(Uuid::from_u128(0x17));

fn registration(user_id: UserId, email: &str) -> Registration {
    Registration {
        user_id,
        email: EmailAddress::parse(email).unwrap(),
        password_hash: PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        name: PersonName::parse("Ada Lovelace", "name").unwrap(),
    }
}

fn client_registered() -> UserEvent {
    let r = registration(CLIENT_ID, "ada@example.com");
    UserEvent::ClientRegistered {
        user_id: r.user_id,
        email: r.email,
        password_hash: r.password_hash,
        name: r.name,
        registered_at: now(),
    }
}

fn freelancer_registered() -> UserEvent {
    let r = registration(FREELANCER_ID, "fred@example.com");
    UserEvent::FreelancerRegistered {
        user_id: r.user_id,
        email: r.email,
        password_hash: r.password_hash,
        name: r.name,
        registered_at: now(),
    }
}

fn item() -> ProfileItem {
    ProfileItem::parse("Rust", "5 years").unwrap()
}

fn added() -> UserEvent {
    UserEvent::ProfileItemAdded {
        user_id: FREELANCER_ID,
        section: ProfileSection::Skill,
        item_id: ITEM,
        item: item(),
        added_at: now(),
    }
}

fn add() -> UserCommand {
    UserCommand::AddProfileItem {
        section: ProfileSection::Skill,
        item_id: ITEM,
        item: item(),
    }
}

fn run(events: Vec<UserEvent>, actor: Actor, command: UserCommand) -> Then<Vec<UserEvent>> {
    given::<User>(events).when(move |u| decide(u, &command, &ctx(actor)))
}

#[test]
fn a_client_registers() {
    run(
        vec![],
        CLIENT,
        UserCommand::RegisterClient(registration(CLIENT_ID, "ada@example.com")),
    )
    .then([client_registered()]);
}

#[test]
fn a_freelancer_registers() {
    let command = UserCommand::RegisterFreelancer(registration(FREELANCER_ID, "fred@example.com"));
    run(vec![], FREELANCER, command).then([freelancer_registered()]);
}

#[test]
fn one_registers_only_oneself() {
    run(
        vec![],
        OTHER_CLIENT,
        UserCommand::RegisterClient(registration(CLIENT_ID, "a@b.co")),
    )
    .then_err(DomainError::Forbidden("not-the-registrant"));
}

#[test]
fn a_user_registers_once() {
    run(
        vec![client_registered()],
        CLIENT,
        UserCommand::RegisterClient(registration(CLIENT_ID, "a@b.co")),
    )
    .then_err(DomainError::Conflict("user-already-registered"));
}

#[test]
fn a_user_updates_their_profile() {
    let profile = ProfileUpdate::parse(" Ada ", " Engineer ", "Hello").unwrap();
    run(
        vec![client_registered()],
        CLIENT,
        UserCommand::UpdateProfile(profile.clone()),
    )
    .then([UserEvent::ProfileUpdated {
        user_id: CLIENT_ID,
        profile,
        updated_at: now(),
    }]);
}

#[test]
fn only_the_user_edits_their_profile() {
    let profile = ProfileUpdate::parse("Ada", "", "").unwrap();
    run(
        vec![client_registered()],
        OTHER_CLIENT,
        UserCommand::UpdateProfile(profile),
    )
    .then_err(DomainError::Forbidden("not-the-user"));
}

#[test]
fn a_profile_update_lists_every_broken_field() {
    let Err(DomainError::Invalid(errors)) = ProfileUpdate::parse(" ", &"h".repeat(201), &"b".repeat(5_001))
    else {
        panic!("accepted")
    };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["name", "headline", "bio"]);
}

#[test]
fn a_missing_user_is_not_found() {
    run(vec![], CLIENT, UserCommand::SetPhoto(None)).then_err(DomainError::NotFound("user"));
}

#[test]
fn a_freelancer_adds_a_profile_item() {
    run(vec![freelancer_registered()], FREELANCER, add()).then([added()]);
}

#[test]
fn only_freelancers_have_profile_items() {
    run(vec![client_registered()], CLIENT, add()).then_err(DomainError::Forbidden("only-freelancers"));
}

#[test]
fn a_profile_item_is_added_once() {
    run(vec![freelancer_registered(), added()], FREELANCER, add())
        .then_err(DomainError::Conflict("profile-item-exists"));
}

#[test]
fn a_profile_section_is_bounded() {
    let mut history = vec![freelancer_registered()];
    for i in 0..MAX_ITEMS_PER_SECTION {
        history.push(UserEvent::ProfileItemAdded {
            user_id: FREELANCER_ID,
            section: ProfileSection::Language,
            item_id: ProfileItemId::from_uuid(Uuid::from_u128(0x1000 + i as u128)),
            item: item(),
            added_at: now(),
        });
    }
    let command = UserCommand::AddProfileItem {
        section: ProfileSection::Language,
        item_id: ITEM,
        item: item(),
    };
    run(history, FREELANCER, command).then_err(DomainError::Conflict("profile-section-full"));
}

#[test]
fn a_profile_item_is_validated() {
    let Err(DomainError::Invalid(errors)) = ProfileItem::parse("", &"d".repeat(2_001)) else {
        panic!("accepted")
    };
    assert_eq!(errors.len(), 2);
}

#[test]
fn a_freelancer_updates_and_removes_a_profile_item() {
    let update = UserCommand::UpdateProfileItem {
        section: ProfileSection::Skill,
        item_id: ITEM,
        item: item(),
    };
    run(vec![freelancer_registered(), added()], FREELANCER, update).then([UserEvent::ProfileItemUpdated {
        user_id: FREELANCER_ID,
        section: ProfileSection::Skill,
        item_id: ITEM,
        item: item(),
        updated_at: now(),
    }]);
    let remove = UserCommand::RemoveProfileItem {
        section: ProfileSection::Skill,
        item_id: ITEM,
    };
    run(vec![freelancer_registered(), added()], FREELANCER, remove).then([UserEvent::ProfileItemRemoved {
        user_id: FREELANCER_ID,
        section: ProfileSection::Skill,
        item_id: ITEM,
        removed_at: now(),
    }]);
}

#[test]
fn a_missing_profile_item_is_not_found() {
    let remove = UserCommand::RemoveProfileItem {
        section: ProfileSection::Education,
        item_id: ITEM,
    };
    // The item exists, but in another section.
    run(vec![freelancer_registered(), added()], FREELANCER, remove)
        .then_err(DomainError::NotFound("profile-item"));
}

#[test]
fn a_user_sets_a_photo_and_a_freelancer_a_resume() {
    let photo = FileRef::parse("photos/ada.png", "photo").ok();
    run(
        vec![client_registered()],
        CLIENT,
        UserCommand::SetPhoto(photo.clone()),
    )
    .then([UserEvent::PhotoChanged {
        user_id: CLIENT_ID,
        photo,
        changed_at: now(),
    }]);
    let resume = FileRef::parse("resumes/fred.pdf", "resume").ok();
    run(
        vec![freelancer_registered()],
        FREELANCER,
        UserCommand::SetResume(resume.clone()),
    )
    .then([UserEvent::ResumeChanged {
        user_id: FREELANCER_ID,
        resume,
        changed_at: now(),
    }]);
    run(vec![client_registered()], CLIENT, UserCommand::SetResume(None))
        .then_err(DomainError::Forbidden("only-freelancers"));
    assert!(FileRef::parse("has space", "photo").is_err());
}

#[test]
fn a_user_or_an_admin_deletes_the_account() {
    let deleted = UserEvent::UserDeleted {
        user_id: CLIENT_ID,
        email: EmailAddress::parse("ada@example.com").unwrap(),
        deleted_at: now(),
    };
    for actor in [CLIENT, ADMIN, Actor::system()] {
        run(vec![client_registered()], actor, UserCommand::DeleteAccount).then([deleted.clone()]);
    }
    run(
        vec![client_registered()],
        OTHER_CLIENT,
        UserCommand::DeleteAccount,
    )
    .then_err(DomainError::Forbidden("not-the-user"));
    run(
        vec![client_registered(), deleted],
        CLIENT,
        UserCommand::SetPhoto(None),
    )
    .then_err(DomainError::NotFound("user"));
}

#[test]
fn user_events_round_trip() {
    assert_round_trip(&user_events());
}

#[test]
fn every_personal_field_is_one_of_the_event_s_fields_and_ids_and_times_are_not_personal() {
    for event in user_events() {
        let json = serde_json::to_value(&event).unwrap();
        let Some(personal) = event.personal_data() else {
            assert_eq!(event.event_type(), "ProfileItemRemoved", "{json}");
            continue;
        };
        assert_eq!(
            Some(personal.subject.to_string().as_str()),
            json["user_id"].as_str()
        );
        for field in personal.fields {
            assert!(
                json.get(field.name).is_some(),
                "{} has no {}",
                event.event_type(),
                field.name
            );
            assert!(
                !field.name.ends_with("_id") && !field.name.ends_with("_at") && field.name != "section",
                "{} is not personal",
                field.name
            );
        }
        // The event decodes with every personal field redacted (an erased person's events).
        let mut redacted = json.clone();
        for field in personal.fields {
            redacted[field.name] = field.redacted.to_json();
        }
        let decoded: UserEvent = serde_json::from_value(redacted).unwrap();
        assert_eq!(decoded.event_type(), event.event_type());
    }
}

fn user_events() -> Vec<UserEvent> {
    vec![
        client_registered(),
        freelancer_registered(),
        UserEvent::ProfileUpdated {
            user_id: CLIENT_ID,
            profile: ProfileUpdate::parse("Ada", "h", "b").unwrap(),
            updated_at: now(),
        },
        added(),
        UserEvent::ProfileItemUpdated {
            user_id: FREELANCER_ID,
            section: ProfileSection::Achievement,
            item_id: ITEM,
            item: item(),
            updated_at: now(),
        },
        UserEvent::ProfileItemRemoved {
            user_id: FREELANCER_ID,
            section: ProfileSection::Experience,
            item_id: ITEM,
            removed_at: now(),
        },
        UserEvent::PhotoChanged {
            user_id: CLIENT_ID,
            photo: FileRef::parse("p.png", "photo").ok(),
            changed_at: now(),
        },
        UserEvent::ResumeChanged {
            user_id: FREELANCER_ID,
            resume: None,
            changed_at: now(),
        },
        UserEvent::UserDeleted {
            user_id: CLIENT_ID,
            email: EmailAddress::parse("ada@example.com").unwrap(),
            deleted_at: now(),
        },
    ]
}

#[test]
fn a_user_replays_from_its_events() {
    let history = vec![freelancer_registered(), added()];
    assert_eq!(replay::<User>(&history), User::fold(&history));
}

#[test]
fn only_the_operator_tooling_registers_an_admin_and_the_account_is_an_admin() {
    let admin_id = UserId::from_uuid(Uuid::from_u128(0xAD));
    let r = registration(admin_id, "root@example.com");
    let registered = UserEvent::AdminRegistered {
        user_id: admin_id,
        email: r.email.clone(),
        password_hash: r.password_hash.clone(),
        name: r.name.clone(),
        registered_at: now(),
    };
    run(vec![], Actor::system(), UserCommand::RegisterAdmin(r.clone())).then([registered.clone()]);
    let admin = Actor::new(admin_id, Role::Admin);
    for actor in [CLIENT, admin] {
        run(vec![], actor, UserCommand::RegisterAdmin(r.clone()))
            .then_err(DomainError::Forbidden("system-only"));
    }
    let state = User::fold(&[registered]);
    assert_eq!(state.registered.map(|u| u.role), Some(Role::Admin));
}
