//! Upcasters lift old schema versions when events are read (DESIGN §4).

use infra::ledger::{AppendRequest, ExpectedVersion, Ledger, LedgerError, NewEvent, StreamWrite, Upcasters};
use serde_json::json;
use uuid::Uuid;

use crate::support::{Counter, CounterEvent, meta, test_env};

/// Schema 1 → 2: the field `n` was renamed `by`.
fn rename_n_to_by(mut payload: serde_json::Value) -> serde_json::Value {
    if let Some(fields) = payload.as_object_mut()
        && let Some(n) = fields.remove("n")
    {
        fields.insert("by".into(), n);
    }
    payload
}

#[tokio::test]
async fn old_schema_versions_are_lifted_when_read() {
    let env = test_env().await;
    let plain = env.ledger().await.expect("ledger");
    let stream = Uuid::now_v7();
    // A stream written over time: one event from the schema-1 days, one of today's.
    let old = NewEvent {
        event_type: "Incremented".into(),
        schema_version: 1,
        payload: json!({"type": "Incremented", "n": 5}),
        personal: None,
    };
    let today = NewEvent::encode(&CounterEvent::Incremented { by: 7 }).expect("encode");
    assert_eq!(today.schema_version, 2);
    let write = StreamWrite {
        events: vec![old, today],
        ..StreamWrite::of::<Counter>(stream, ExpectedVersion::NoStream, &[]).expect("write")
    };
    plain
        .append(AppendRequest::new(meta(), vec![write]))
        .await
        .expect("append");

    // Without the upcaster the old payload does not decode into today's type.
    let error = plain
        .load::<Counter>(stream)
        .await
        .expect_err("schema 1 without upcaster");
    assert!(
        matches!(
            error,
            LedgerError::Codec {
                schema_version: 1,
                ..
            }
        ),
        "{error:?}"
    );

    let ledger = Ledger::new(
        plain.pool().clone(),
        Upcasters::default().with("Incremented", 1, rename_n_to_by),
    );
    let loaded = ledger.load::<Counter>(stream).await.expect("load with upcaster");
    assert_eq!(
        loaded.state,
        Counter {
            total: 12,
            increments: 2
        }
    );
    assert_eq!(loaded.version, 2);

    // Stored as written (history is never rewritten), lifted on each read, also by consumers.
    let stored = ledger.read_stream(stream, 1).await.expect("read");
    assert_eq!(stored[0].schema_version, 1);
    assert_eq!(stored[0].payload["n"], 5);
    let decoded: CounterEvent = stored[0].decode(ledger.upcasters()).expect("decode");
    assert_eq!(decoded, CounterEvent::Incremented { by: 5 });
    let current: CounterEvent = stored[1].decode(ledger.upcasters()).expect("decode");
    assert_eq!(
        current,
        CounterEvent::Incremented { by: 7 },
        "current schema untouched"
    );
}
