//! Micro benchmarks of the hot path (criterion): each provider's verify +
//! parse over its real fixture, template rendering, and one workflow
//! interpretation with a warm store.
//!
//! ```sh
//! cargo bench --bench micro                 # everything
//! cargo bench --bench micro -- verify_parse # one group
//! ```

use std::collections::BTreeSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use serde_json::{json, Value};
use sha2::{Sha256, Sha512};

/// The server binary's allocator (`src/main.rs`), so that what allocates
/// costs here what it costs in the server.
#[global_allocator]
static GLOBAL: ringback::alloc::Mimalloc = ringback::alloc::Mimalloc;

use ringback::delivery::{Delivered, Delivery, DeliveryFuture, Outbound, Request};
use ringback::engine::{Engine, RunOptions};
use ringback::event::{self, Event, ParseContext, Provider, Secret, SourceAuth};
use ringback::store::{Contact, RunStatus, Store};
use ringback::workflow::template::TemplateBuilder;
use ringback::workflow::{compile, Known, RenderData};

const SECRET: &str = "bench-secret";
/// A Standard Webhooks secret: `whsec_` + base64 of the key.
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SHIPPED_WORKFLOW: &str = include_str!("../workflows/missed-call-followup.yaml");

/// One provider's delivery as it reaches `POST /hooks/<source>`.
struct Delivery1 {
    name: &'static str,
    provider: Provider,
    business: Option<&'static str>,
    body: &'static [u8],
    auth: SourceAuth,
    headers: Vec<(&'static str, String)>,
    query_token: Option<&'static str>,
}

fn hex_hmac_sha256(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The Meta missed call of [`deliveries`], parsed: the event the template,
/// workflow and store benches work on.
fn meta_missed_call(now: Timestamp) -> Event {
    let d = deliveries(now)
        .into_iter()
        .find(|d| d.name == "meta")
        .expect("a meta delivery");
    let ctx = ParseContext {
        source: "meta",
        provider: Provider::Meta,
        business: None,
        received_at: now,
        delivery_id: None,
    };
    event::parse(d.body, &ctx).expect("parses").remove(0)
}

fn deliveries(now: Timestamp) -> Vec<Delivery1> {
    let token_auth = || SourceAuth {
        token: Some(Secret::new(SECRET)),
        ..Default::default()
    };
    let waha_body: &[u8] = include_bytes!("../tests/fixtures/waha/call_received_noweb.json");
    let waha_sig = {
        let mut mac = Hmac::<Sha512>::new_from_slice(SECRET.as_bytes()).expect("any key length");
        mac.update(waha_body);
        hex::encode(mac.finalize().into_bytes())
    };
    let meta_body: &[u8] = include_bytes!("../tests/fixtures/meta/terminate_unanswered.json");
    // The same payload on one line, as Meta sends it (the fixture is laid
    // out for reading, and a payload over several lines is compacted).
    let meta_compact: &'static [u8] = Box::leak(
        serde_json::to_vec(&serde_json::from_slice::<Value>(meta_body).expect("JSON"))
            .expect("serialises")
            .into_boxed_slice(),
    );
    let standard_body: &[u8] = include_bytes!("../tests/fixtures/standard/call_missed.json");
    let standard_sig = {
        let key = base64::engine::general_purpose::STANDARD
            .decode(STANDARD_SECRET.trim_start_matches("whsec_"))
            .expect("base64 secret");
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
        mac.update(format!("msg_bench.{}.", now.as_second()).as_bytes());
        mac.update(standard_body);
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        )
    };
    vec![
        Delivery1 {
            name: "wazzap",
            provider: Provider::Wazzap,
            business: Some("+5215500000000"),
            body: include_bytes!("../tests/fixtures/wazzap/call_missed.json"),
            auth: token_auth(),
            headers: vec![("x-webhook-token", SECRET.into())],
            query_token: None,
        },
        Delivery1 {
            name: "waha",
            provider: Provider::Waha,
            business: None,
            body: waha_body,
            auth: SourceAuth {
                waha_hmac_key: Some(Secret::new(SECRET)),
                ..Default::default()
            },
            headers: vec![("x-webhook-hmac", waha_sig)],
            query_token: None,
        },
        Delivery1 {
            name: "v3",
            provider: Provider::V3,
            business: None,
            body: include_bytes!("../tests/fixtures/v3/call_missed.json"),
            auth: token_auth(),
            headers: vec![("authorization", format!("Bearer {SECRET}"))],
            query_token: None,
        },
        meta_delivery("meta", meta_body),
        meta_delivery("meta_compact", meta_compact),
        Delivery1 {
            name: "timelinesai",
            provider: Provider::Timelinesai,
            business: None,
            body: include_bytes!("../tests/fixtures/timelinesai/call_incoming_missed.json"),
            auth: token_auth(),
            headers: Vec::new(),
            query_token: Some(SECRET),
        },
        Delivery1 {
            name: "standard",
            provider: Provider::Standard,
            business: None,
            body: standard_body,
            auth: SourceAuth {
                standard_secrets: vec![Secret::new(STANDARD_SECRET)],
                ..Default::default()
            },
            headers: vec![
                ("webhook-id", "msg_bench".into()),
                ("webhook-timestamp", now.as_second().to_string()),
                ("webhook-signature", standard_sig),
            ],
            query_token: None,
        },
    ]
}

/// A Meta delivery of `body`, signed with the app secret.
fn meta_delivery(name: &'static str, body: &'static [u8]) -> Delivery1 {
    Delivery1 {
        name,
        provider: Provider::Meta,
        business: None,
        body,
        auth: SourceAuth {
            meta_app_secret: Some(Secret::new(SECRET)),
            ..Default::default()
        },
        headers: vec![(
            "x-hub-signature-256",
            format!("sha256={}", hex_hmac_sha256(SECRET.as_bytes(), body)),
        )],
        query_token: None,
    }
}

fn verify_and_parse(d: &Delivery1, provider: Provider, now: Timestamp) -> Vec<Event> {
    let headers: Vec<(&str, &str)> = d.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    event::verify(&d.auth, headers.as_slice(), d.query_token, d.body, now).expect("verifies");
    let ctx = ParseContext {
        source: d.name,
        provider,
        business: d.business,
        received_at: now,
        delivery_id: headers
            .iter()
            .find(|(k, _)| *k == "webhook-id")
            .map(|(_, v)| *v),
    };
    event::parse(d.body, &ctx).expect("parses")
}

fn bench_verify_parse(c: &mut Criterion) {
    let now = Timestamp::now();
    let mut group = c.benchmark_group("verify_parse");
    for d in deliveries(now) {
        assert!(
            !verify_and_parse(&d, d.provider, now).is_empty(),
            "{} yields events",
            d.name
        );
        group.throughput(Throughput::Elements(1));
        group.bench_function(d.name, |b| {
            b.iter(|| black_box(verify_and_parse(black_box(&d), d.provider, now)))
        });
        // The same payload through shape detection (`provider: auto`).
        group.bench_function(format!("{}_auto", d.name), |b| {
            b.iter(|| black_box(verify_and_parse(black_box(&d), Provider::Auto, now)))
        });
    }
    group.finish();
    // Parts of a parse: the phone normalisation and the country lookup
    // (phonenumber's metadata and regexes) every call event goes through.
    let mut group = c.benchmark_group("phone");
    group.bench_function("normalise_phone", |b| {
        b.iter(|| black_box(event::normalise_phone(black_box("5215512345678"))))
    });
    group.bench_function("country_of", |b| {
        b.iter(|| black_box(event::country_of(black_box("+5215512345678"))))
    });
    group.finish();
}

fn render_context() -> Value {
    let now = Timestamp::now();
    let event = meta_missed_call(now);
    json!({
        "event": event,
        "contact": {"phone": "+5215512345678", "name": "Lupita", "country": "MX",
                    "tags": ["missed-call-followup", "lead"], "fields": {"plan": "pro"}},
        "steps": {"found": {"found": true}},
        "vars": {},
        "workflow": {"name": "missed-call-followup", "version": "abc", "file": "x.yaml"},
        "now": now.to_string(),
    })
}

fn bench_templates(c: &mut Criterion) {
    let mut builder = TemplateBuilder::new();
    let followup = builder
        .compile("Hi{{#if contact.name}} {{contact.name}}{{/if}}, sorry we missed your call. Book a time that suits you: https://cal.example/book")
        .expect("compiles");
    let caller = builder.compile("{{event.caller}}").expect("compiles");
    let condition = builder
        .compile("{{eq event.direction 'incoming'}}")
        .expect("compiles");
    let contains = builder
        .compile("{{contains contact.tags 'vip'}}")
        .expect("compiles");
    let templates = builder.finish();
    let value = render_context();
    let data = RenderData::new(&value);
    let mut group = c.benchmark_group("template");
    group.bench_function("followup_text", |b| {
        b.iter(|| black_box(templates.render(&followup, &data)))
    });
    group.bench_function("event_caller", |b| {
        b.iter(|| black_box(templates.render(&caller, &data)))
    });
    group.bench_function("when_eq_direction", |b| {
        b.iter(|| black_box(templates.truthy(&condition, &data)))
    });
    group.bench_function("contains_tag", |b| {
        b.iter(|| black_box(templates.truthy(&contains, &data)))
    });
    // The engine builds the context afresh for every condition and step
    // (RenderData::new over the run's JSON); this is that cost.
    group.bench_function("render_data_new", |b| {
        b.iter(|| black_box(RenderData::new(black_box(&value))))
    });
    group.finish();
}

/// Sends nothing; answers like Meta would.
struct FakeDelivery;

impl Delivery for FakeDelivery {
    fn deliver(&self, request: Request) -> DeliveryFuture<'_> {
        Box::pin(async move {
            let id = match &request.outbound {
                Outbound::Text { .. } | Outbound::Template { .. } => json!("wamid.bench"),
                _ => Value::Null,
            };
            Delivered {
                result: Ok(json!({"status": 200, "id": id})),
                attempts: Vec::new(),
            }
        })
    }
}

fn bench_workflow(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), 64 << 20).expect("store");
    let known = Known {
        connectors: BTreeSet::from(["whatsapp".to_string(), "slack".to_string()]),
        sources: BTreeSet::from(["meta".to_string()]),
    };
    let workflow = Arc::new(
        compile(
            "missed-call-followup.yaml",
            "missed-call-followup",
            SHIPPED_WORKFLOW,
            &known,
        )
        .expect("the shipped workflow compiles"),
    );
    let engine = Engine::for_workflow(
        store.clone(),
        workflow.clone(),
        Arc::new(FakeDelivery),
        ringback::clock::system(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let now = Timestamp::now();
    let template = meta_missed_call(now);
    // A warm store: 10,000 contacts that the runs find and update.
    const WARM: u64 = 10_000;
    let phone = |i: u64| format!("+52155{:08}", i % WARM);
    for i in 0..WARM {
        let mut contact = Contact::new(&phone(i), now);
        contact.name = Some(format!("Contact {i}"));
        store
            .modify_contact(&phone(i), now, Some(contact), |_| {})
            .expect("contact");
    }
    store.flush_now().expect("flush");
    let mut n = 0u64;
    let mut event_for = |record: bool| {
        n += 1;
        let mut e = template.clone();
        e.id = format!("evt_bench_{record}_{n}");
        e.caller = Some(phone(n));
        std::sync::Arc::new(e)
    };
    let mut check = event_for(false);
    std::sync::Arc::make_mut(&mut check).id = "evt_check".into();
    let execution = rt
        .block_on(engine.run_workflow(workflow.clone(), &check, RunOptions::default()))
        .expect("the workflow runs for a missed call");
    assert_eq!(execution.status, RunStatus::Succeeded, "{execution:?}");

    let mut group = c.benchmark_group("workflow");
    group.measurement_time(Duration::from_secs(5));
    // Steps, contact reads and writes, no journal (as `ringback run --dry-run`
    // records nothing, but here against the warm store).
    group.bench_function("missed_call_followup_unrecorded", |b| {
        b.iter_batched(
            || event_for(false),
            |e| {
                let options = RunOptions {
                    record: false,
                    ..RunOptions::default()
                };
                rt.block_on(engine.run_workflow(workflow.clone(), &e, options))
            },
            BatchSize::SmallInput,
        )
    });
    // As the server runs it: journal saved after every step and flushed
    // (fdatasync) after the send, one run at a time, so no group commit.
    group.bench_function("missed_call_followup_recorded", |b| {
        b.iter_batched(
            || event_for(true),
            |e| rt.block_on(engine.run_workflow(workflow.clone(), &e, RunOptions::default())),
            BatchSize::SmallInput,
        )
    });
    group.finish();
    drop(engine);
    drop(store);
}

/// What ingestion does to the store per request: `insert_events` (the
/// inbox's plain writes, see `store/inbox.rs`) and the flush a 2xx waits for. `n` inserts then one
/// flush shows what a group commit of `n` requests costs.
fn bench_store(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), 64 << 20).expect("store");
    let now = Timestamp::now();
    let template = meta_missed_call(now);
    let mut n = 0u64;
    let mut events = |count: usize| -> Vec<Event> {
        (0..count)
            .map(|_| {
                n += 1;
                let mut e = template.clone();
                e.id = format!("evt_store_{n}");
                e.caller = Some(format!("+52157{:08}", n % 100_000_000));
                e
            })
            .collect()
    };
    let window = Duration::from_secs(7 * 86_400);
    let mut group = c.benchmark_group("store");
    for count in [1usize, 16, 64] {
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function(format!("insert_{count}_events_no_flush"), |b| {
            b.iter_batched(
                || events(count),
                |batch| {
                    for e in &batch {
                        store
                            .insert_events(std::slice::from_ref(e), now, window)
                            .expect("insert");
                    }
                },
                BatchSize::SmallInput,
            )
        });
        group.bench_function(format!("insert_{count}_events_then_flush"), |b| {
            b.iter_batched(
                || events(count),
                |batch| {
                    for e in &batch {
                        store
                            .insert_events(std::slice::from_ref(e), now, window)
                            .expect("insert");
                    }
                    store.flush_now().expect("flush");
                },
                BatchSize::SmallInput,
            )
        });
    }
    // Everything the store does for one ingested call event, without the
    // flush: the inbox's writes, then the engine's hand-over (is it still
    // queued, runs waiting on the caller, the call's state) and taking it
    // off the queue. The sled operations per event are most of
    // ingestion's CPU after HTTP.
    group.throughput(Throughput::Elements(1));
    group.bench_function("ingest_one_call_event", |b| {
        b.iter_batched(
            || events(1),
            |batch| {
                let e = batch[0].clone();
                let offered = store.accept_events(batch, now, window).expect("accept");
                let seq = match offered.into_iter().next() {
                    Some(ringback::store::Offered::Accepted(stored)) => {
                        store.mark_accepted(&stored).expect("mark");
                        stored.seq
                    }
                    _ => panic!("the event is new"),
                };
                assert!(store.is_pending(seq, &e.id).expect("pending"));
                let caller = e.caller.as_deref().expect("caller");
                store.waits_for(caller, &e.kind).expect("waits");
                store.track_call(&e, now).expect("call state");
                store.mark_taken(seq, &e.id).expect("take");
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // Short runs: this machine is shared and noisy; medians of several
    // invocations are what benches/README.md quotes.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_verify_parse, bench_templates, bench_workflow, bench_store
}
criterion_main!(benches);
