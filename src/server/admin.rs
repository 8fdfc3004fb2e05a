//! The admin API (SPEC §6): workflows, contacts, executions. Every route
//! here needs `Authorization: Bearer <admin_token>` when a token is set.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::error::{ApiPath, ApiQuery};
use super::{ApiError, SharedState};
use crate::store::{Contact, Execution, ExecutionFilter, RunStatus};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// Refuse `/api/*` without the admin token (when one is configured).
pub(super) async fn require_token(
    State(state): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    let config = state.config();
    if let Some(token) = &config.admin_token {
        let offered = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let ok = offered.is_some_and(|o| bool::from(o.as_bytes().ct_eq(token.expose().as_bytes())));
        if !ok {
            let message = if offered.is_some() {
                "admin token does not match"
            } else {
                "missing admin token: send Authorization: Bearer <admin_token>"
            };
            return ApiError::unauthorized(message).into_response();
        }
    }
    next.run(request).await
}

fn storage(e: crate::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "storage failure in the admin API");
    ApiError::unavailable("storage is unavailable")
}

fn limit(requested: Option<usize>) -> usize {
    requested.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

pub(super) async fn workflows(State(state): State<SharedState>) -> Json<Value> {
    let catalog = state.catalog.read().expect("catalog lock").clone();
    let errors_of = |file: &str| -> Vec<String> {
        catalog
            .problems
            .iter()
            .filter(|p| p.file == file)
            .flat_map(|p| p.errors.clone())
            .collect()
    };
    let workflows: Vec<Value> = catalog
        .workflows
        .iter()
        .map(|w| {
            json!({
                "name": w.name,
                "description": w.description,
                "file": w.file,
                "version": w.version,
                "events": w.trigger.event_names(),
                "sources": w.trigger.sources,
                "errors": errors_of(&w.file),
            })
        })
        .collect();
    let failed: Vec<Value> = catalog
        .problems
        .iter()
        .filter(|p| !p.kept_previous)
        .map(|p| json!({"name": null, "file": p.file, "version": null, "events": [], "errors": p.errors}))
        .collect();
    let mut all = workflows;
    all.extend(failed);
    Json(json!({"workflows": all}))
}

#[derive(Debug, Deserialize)]
pub(super) struct ContactQuery {
    tag: Option<String>,
    q: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

pub(super) async fn list_contacts(
    State(state): State<SharedState>,
    ApiQuery(query): ApiQuery<ContactQuery>,
) -> Result<Json<Value>, ApiError> {
    // A cursor is a phone; pasted into a URL unencoded its `+` arrives as a
    // space, so read it the way phones are read everywhere else.
    let cursor = query
        .cursor
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| {
            crate::event::normalise_phone(c)
                .map(|p| p.id)
                .unwrap_or_else(|_| c.to_string())
        });
    let store = state.store.clone();
    let (contacts, next) = tokio::task::spawn_blocking(move || {
        store.list_contacts(
            query.tag.as_deref().filter(|t| !t.is_empty()),
            query.q.as_deref(),
            limit(query.limit),
            cursor.as_deref(),
        )
    })
    .await
    .map_err(|_| ApiError::unavailable("listing failed"))?
    .map_err(storage)?;
    Ok(Json(json!({"contacts": contacts, "next_cursor": next})))
}

/// The path's phone as the E.164 key (`+52...`, `%2B52...` or `52...`).
fn phone_key(raw: &str) -> Result<String, ApiError> {
    match crate::event::normalise_phone(raw) {
        Ok(c) if c.is_phone => Ok(c.id),
        Ok(_) => Err(ApiError::unprocessable(format!(
            "`{raw}` is a privacy id, not a phone number"
        ))),
        Err(e) => Err(ApiError::unprocessable(format!("phone: {e}"))),
    }
}

pub(super) async fn get_contact(
    State(state): State<SharedState>,
    ApiPath(phone): ApiPath<String>,
) -> Result<Json<Contact>, ApiError> {
    let key = phone_key(&phone)?;
    state
        .store
        .contact(&key)
        .map_err(storage)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no contact with phone {key}")))
}

/// PUT and PATCH bodies. Unknown keys are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactBody {
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    country: Option<Option<String>>,
    #[serde(default)]
    tags: Option<BTreeSet<String>>,
    /// For PATCH, a null value removes that field.
    #[serde(default)]
    fields: Option<BTreeMap<String, Option<String>>>,
}

/// Tell "absent" (None) from "null" (Some(None)).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn parse_body(bytes: &[u8]) -> Result<ContactBody, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            ApiError::bad_request(format!("body is not valid JSON: {e}"))
        }
        _ => ApiError::unprocessable(format!(
            "{e} (a contact takes name, country, tags and fields)"
        )),
    })
}

pub(super) async fn put_contact(
    State(state): State<SharedState>,
    ApiPath(phone): ApiPath<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = phone_key(&phone)?;
    let body = parse_body(&body)?;
    let now = state.clock.now();
    let changed = state
        .store
        .modify_contact(&key, now, Some(Contact::new(&key, now)), |c| {
            c.name = body.name.clone().flatten();
            c.country = body.country.clone().flatten();
            c.tags = body.tags.clone().unwrap_or_default();
            c.fields = body
                .fields
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect();
        })
        .map_err(storage)?;
    let status = if changed.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(changed.contact)).into_response())
}

pub(super) async fn patch_contact(
    State(state): State<SharedState>,
    ApiPath(phone): ApiPath<String>,
    body: Bytes,
) -> Result<Json<Contact>, ApiError> {
    let key = phone_key(&phone)?;
    let body = parse_body(&body)?;
    let now = state.clock.now();
    let changed = state
        .store
        .modify_contact(&key, now, None, |c| {
            if let Some(name) = &body.name {
                c.name = name.clone();
            }
            if let Some(country) = &body.country {
                c.country = country.clone();
            }
            if let Some(tags) = &body.tags {
                c.tags = tags.clone();
            }
            if let Some(fields) = &body.fields {
                for (k, v) in fields {
                    match v {
                        Some(v) => {
                            c.fields.insert(k.clone(), v.clone());
                        }
                        None => {
                            c.fields.remove(k);
                        }
                    }
                }
            }
        })
        .map_err(storage)?;
    changed
        .contact
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no contact with phone {key}")))
}

pub(super) async fn delete_contact(
    State(state): State<SharedState>,
    ApiPath(phone): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let key = phone_key(&phone)?;
    if state.store.delete_contact(&key).map_err(storage)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no contact with phone {key}")))
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ExecutionQuery {
    workflow: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// The list view: the execution without its steps and raw payload.
fn summary(e: &Execution) -> Value {
    json!({
        "id": e.id,
        "workflow": e.workflow,
        "workflow_version": e.workflow_version,
        "status": e.status,
        "event": {"id": e.event.id, "kind": e.event.kind, "caller": e.event.caller, "source": e.event.source},
        "started_at": e.started_at,
        "finished_at": e.finished_at,
        "error": e.error,
        "test": e.test,
        "steps": e.steps.len(),
    })
}

pub(super) async fn list_executions(
    State(state): State<SharedState>,
    ApiQuery(query): ApiQuery<ExecutionQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = match query.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            ApiError::unprocessable(format!(
                "unknown status `{s}` (running, waiting, succeeded, failed, debounced or stopped)"
            ))
        })?),
    };
    let filter = ExecutionFilter {
        workflow: query.workflow.filter(|w| !w.is_empty()),
        status,
    };
    let store = state.store.clone();
    let (list, next) = tokio::task::spawn_blocking(move || {
        store.list_executions(
            &filter,
            limit(query.limit),
            query.cursor.as_deref().filter(|c| !c.is_empty()),
        )
    })
    .await
    .map_err(|_| ApiError::unavailable("listing failed"))?
    .map_err(storage)?;
    Ok(Json(json!({
        "executions": list.iter().map(summary).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

pub(super) async fn get_execution(
    State(state): State<SharedState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Execution>, ApiError> {
    state
        .store
        .execution(&id)
        .map_err(storage)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no execution `{id}`")))
}

pub(super) async fn active_calls(
    State(state): State<SharedState>,
) -> Result<Json<Value>, ApiError> {
    let calls = state
        .store
        .active_calls(state.clock.now())
        .map_err(storage)?;
    let calls: Vec<Value> = calls
        .iter()
        .map(|c| {
            json!({
                "source": c.source,
                "call_id": c.call_id,
                "caller": c.caller,
                "business": c.business,
                "direction": c.direction,
                "video": c.video,
                "state": c.state,
                "started_at": c.started_at,
                "last_event_at": c.last_event_at,
                "last_kind": c.last_kind,
            })
        })
        .collect();
    Ok(Json(json!({"calls": calls})))
}
