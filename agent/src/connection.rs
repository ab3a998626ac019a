//! One RPC connection on the `openmosix` subsystem: reads size-limited lines,
//! answers each request in order, and runs the connection's subscriptions.
//! Every malformed input gets a JSON-RPC error and the connection stays usable.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hpc::framing::{Frame, LineReader, write_line};
use hpc::model::{ProcessDelta, ProcessInfo};
use hpc::protocol::{
    MAX_MESSAGE_BYTES, MIN_SUBSCRIBE_INTERVAL_MS, Notification, Response, RpcError,
    SubscribeParams, SubscriptionId, UPDATE_NOTIFICATION, Update, codes, methods,
};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::context::AgentContext;
use crate::rpc::{Caller, dispatch, params};

/// Most subscriptions one connection may hold.
pub const MAX_SUBSCRIPTIONS: usize = 16;

/// Serves one connection until the peer closes its side; returns when every
/// answer has been written.
pub async fn serve<R, W>(read: R, mut write: W, ctx: Arc<AgentContext>, caller: Caller)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(line) = out_rx.recv().await {
            if write_line(&mut write, &line).await.is_err() {
                break;
            }
        }
    });
    let mut reader = LineReader::new(BufReader::new(read), MAX_MESSAGE_BYTES);
    let mut subs: HashMap<u64, JoinHandle<()>> = HashMap::new();
    let mut next_sub = 1u64;
    loop {
        let frame = match reader.next_frame().await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "connection read failed");
                break;
            }
        };
        let reply = match frame {
            Frame::Eof => break,
            Frame::TooLong { len, .. } => Some(Response::err(
                Value::Null,
                RpcError::new(
                    codes::MESSAGE_TOO_LARGE,
                    format!(
                        "message of {len} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes; it was discarded"
                    ),
                ),
            )),
            Frame::Line(line) => {
                handle_line(&line, &ctx, &caller, &mut subs, &mut next_sub, &out_tx).await
            }
        };
        if let Some(r) = reply {
            let Ok(bytes) = serde_json::to_vec(&r) else {
                continue;
            };
            if out_tx.send(bytes).await.is_err() {
                break;
            }
        }
    }
    for (_, h) in subs {
        h.abort();
    }
    drop(out_tx);
    let _ = writer.await;
}

/// A request read from one line, checked for the JSON-RPC envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRequest {
    /// Its id (`None`: a notification, which gets no answer).
    pub id: Option<Value>,
    /// The method.
    pub method: String,
    /// The params: an object, or null when absent.
    pub params: Value,
}

/// Reads one line as a request: `Ok(None)` for a blank line, the error
/// answer for anything that is not a valid JSON-RPC 2.0 request.
pub fn parse_request(line: &[u8]) -> Result<Option<ParsedRequest>, Box<Response>> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(line).map_err(|e| {
        Box::new(Response::err(
            Value::Null,
            RpcError::new(codes::PARSE_ERROR, format!("not valid JSON: {e}")),
        ))
    })?;
    let id = value.get("id").cloned();
    let invalid = |msg: &str| {
        Box::new(Response::err(
            id.clone().unwrap_or(Value::Null),
            RpcError::new(codes::INVALID_REQUEST, msg),
        ))
    };
    if value.is_array() {
        return Err(invalid(
            "batch requests are not supported: send one request per line",
        ));
    }
    let Some(obj) = value.as_object() else {
        return Err(invalid("a request must be a JSON object"));
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid("missing or wrong \"jsonrpc\": must be \"2.0\""));
    }
    if let Some(i) = &id
        && !(i.is_number() || i.is_string() || i.is_null())
    {
        return Err(invalid("\"id\" must be a number, a string or null"));
    }
    let Some(method) = obj.get("method").and_then(Value::as_str) else {
        return Err(invalid("missing \"method\" (a string)"));
    };
    let params = obj.get("params").cloned().unwrap_or(Value::Null);
    if !(params.is_object() || params.is_null()) {
        return Err(Box::new(Response::err(
            id.unwrap_or(Value::Null),
            RpcError::invalid_params("\"params\" must be an object"),
        )));
    }
    Ok(Some(ParsedRequest {
        id,
        method: method.to_string(),
        params,
    }))
}

async fn handle_line(
    line: &[u8],
    ctx: &Arc<AgentContext>,
    caller: &Caller,
    subs: &mut HashMap<u64, JoinHandle<()>>,
    next_sub: &mut u64,
    out: &mpsc::Sender<Vec<u8>>,
) -> Option<Response> {
    let ParsedRequest {
        id,
        method,
        params: p,
    } = match parse_request(line) {
        Ok(Some(r)) => r,
        Ok(None) => return None,
        Err(answer) => return Some(*answer),
    };
    let method = method.as_str();
    let result = match method {
        methods::SUBSCRIBE => subscribe(ctx, p, subs, next_sub, out),
        methods::UNSUBSCRIBE => params::<SubscriptionId>(method, p).and_then(|s| {
            subs.remove(&s.subscription)
                .map(|h| {
                    h.abort();
                    json!(true)
                })
                .ok_or_else(|| {
                    RpcError::invalid_params(format!("no subscription {}", s.subscription))
                })
        }),
        _ => dispatch(ctx, caller, method, p).await,
    };
    // A request without an id is a notification: no answer.
    let id = id?;
    Some(match result {
        Ok(v) => Response::ok(id, v),
        Err(e) => Response::err(id, e),
    })
}

fn subscribe(
    ctx: &Arc<AgentContext>,
    p: Value,
    subs: &mut HashMap<u64, JoinHandle<()>>,
    next_sub: &mut u64,
    out: &mpsc::Sender<Vec<u8>>,
) -> Result<Value, RpcError> {
    let p: SubscribeParams = params(methods::SUBSCRIBE, p)?;
    if p.interval_ms < MIN_SUBSCRIBE_INTERVAL_MS {
        return Err(RpcError::invalid_params(format!(
            "interval_ms must be at least {MIN_SUBSCRIBE_INTERVAL_MS}, not {}",
            p.interval_ms
        )));
    }
    if !p.status && !p.processes {
        return Err(RpcError::invalid_params(
            "subscribe to status, processes or both",
        ));
    }
    subs.retain(|_, h| !h.is_finished());
    if subs.len() >= MAX_SUBSCRIPTIONS {
        return Err(RpcError::invalid_params(format!(
            "at most {MAX_SUBSCRIPTIONS} subscriptions per connection"
        )));
    }
    let id = *next_sub;
    *next_sub += 1;
    let handle = tokio::spawn(push_updates(ctx.clone(), id, p, out.clone()));
    subs.insert(id, handle);
    Ok(serde_json::to_value(SubscriptionId { subscription: id }).unwrap_or(Value::Null))
}

async fn push_updates(
    ctx: Arc<AgentContext>,
    id: u64,
    p: SubscribeParams,
    out: mpsc::Sender<Vec<u8>>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(p.interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<Arc<Vec<ProcessInfo>>> = None;
    let mut seq = 0u64;
    loop {
        tick.tick().await;
        let snap = ctx.current();
        let processes = if p.processes {
            let d = delta(last.as_deref().map(Vec::as_slice), &snap.processes);
            last = Some(snap.processes.clone());
            if d.is_empty() && seq > 0 && !p.status {
                continue;
            }
            Some(d)
        } else {
            None
        };
        let update = Update {
            subscription: id,
            seq,
            status: p.status.then(|| snap.status.clone()),
            processes,
        };
        seq += 1;
        let Ok(params) = serde_json::to_value(update) else {
            continue;
        };
        let n = Notification {
            jsonrpc: "2.0".into(),
            method: UPDATE_NOTIFICATION.into(),
            params,
        };
        let Ok(bytes) = serde_json::to_vec(&n) else {
            continue;
        };
        if out.send(bytes).await.is_err() {
            return;
        }
    }
}

/// Differences between two PID-sorted process tables.
pub fn delta(old: Option<&[ProcessInfo]>, new: &[ProcessInfo]) -> ProcessDelta {
    let Some(old) = old else {
        return ProcessDelta {
            added: new.to_vec(),
            ..Default::default()
        };
    };
    let mut d = ProcessDelta::default();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(o), Some(n)) if o.pid == n.pid => {
                if o != n {
                    d.changed.push(n.clone());
                }
                i += 1;
                j += 1;
            }
            (Some(o), Some(n)) if o.pid < n.pid => {
                d.removed.push(o.pid);
                i += 1;
            }
            (_, Some(n)) => {
                d.added.push(n.clone());
                j += 1;
            }
            (Some(o), None) => {
                d.removed.push(o.pid);
                i += 1;
            }
            (None, None) => break,
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_before_dispatch() {
        let ok = parse_request(br#"{"jsonrpc":"2.0","id":1,"method":"node.status"}"#).unwrap();
        assert_eq!(ok.unwrap().method, "node.status");
        assert_eq!(parse_request(b"  \t").unwrap(), None);
        for (bad, code) in [
            (&b"{nope"[..], codes::PARSE_ERROR),
            (br#"[{"jsonrpc":"2.0"}]"#, codes::INVALID_REQUEST),
            (
                br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
                codes::INVALID_REQUEST,
            ),
            (
                br#"{"jsonrpc":"2.0","id":[1],"method":"x"}"#,
                codes::INVALID_REQUEST,
            ),
            (br#"{"jsonrpc":"2.0","id":1}"#, codes::INVALID_REQUEST),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#,
                codes::INVALID_PARAMS,
            ),
        ] {
            let e = parse_request(bad).unwrap_err();
            assert_eq!(e.error.map(|e| e.code), Some(code));
        }
    }
}
