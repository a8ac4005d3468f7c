//! A runaway handler is interrupted once `policy.handler_timeout` passes, whatever it loops on,
//! and its Lua state serves the next call.

use std::time::{Duration, Instant};

use ferry_config::PolicySource;

use super::*;
use crate::model::{Message, MessageIdGenerator};
use crate::policy::requeue;

const LIMIT: Duration = Duration::from_millis(200);

fn state(body: &str) -> PolicyState {
    let text = format!("kumo.on('smtp_server_message_received', function(msg)\n{body}\nend)\n");
    let text: &'static str = Box::leak(text.into_boxed_str());
    PolicyState::load_with_timeout(Some(&PolicySource::Embedded { name: "t.lua", text }), LIMIT).unwrap()
}

fn message() -> Message {
    let g = MessageIdGenerator::new(&uuid::Uuid::new_v4());
    Message::new(g.generate(), "s@example.com".into(), vec!["r@example.com".into()], "\r\n".into())
}

/// Run the handler; it must fail with the time-limit error well before 10 × the limit.
fn assert_interrupted(body: &str) {
    let state = state(body);
    let started = Instant::now();
    let (_, result) =
        state.run_message_chain("smtp_server_message_received", message(), |_| Ok(mlua::MultiValue::new()));
    let took = started.elapsed();
    let err = result.expect_err("a runaway handler must fail").to_string();
    assert!(err.contains("time limit"), "{body}: {err}");
    assert!(took >= LIMIT && took < LIMIT * 10, "{body}: interrupted after {took:?}");
    // The state is free again: a normal chain on it returns at once (the deadline is disarmed).
    let quick = state.lua().load("return 1 + 1").eval::<i64>().unwrap();
    assert_eq!(quick, 2);
}

#[test]
fn an_empty_busy_loop_is_interrupted() {
    assert_interrupted("while true do end");
}

#[test]
fn a_loop_calling_c_functions_is_interrupted() {
    assert_interrupted("while true do local s = string.rep('x', 1000); s = s:upper(); s = s:find('y') end");
}

#[test]
fn a_loop_swallowing_the_error_with_pcall_is_still_interrupted() {
    assert_interrupted("while true do pcall(function() while true do end end) end");
}

#[test]
fn a_loop_swallowing_the_error_with_xpcall_is_still_interrupted() {
    assert_interrupted(
        "while true do xpcall(function() while true do end end, function(e) return e end) end",
    );
}

#[test]
fn a_loop_swallowing_the_error_in_a_coroutine_is_still_interrupted() {
    assert_interrupted(
        "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
    );
}

/// One state per lane, every delivery state held by a runaway handler: a reception call is
/// still answered at once, and the delivery lane is free again after handler_timeout.
#[tokio::test]
async fn a_runaway_delivery_handler_does_not_hold_the_reception_lane() {
    let text = "kumo.on('requeue_message', function(msg) while true do end end)\n\
                kumo.on('smtp_server_message_received', function(msg) msg:set_meta('seen', true) end)";
    let source = PolicySource::Embedded { name: "t.lua", text };
    let pool = PolicyPool::start_with_timeout(Some(source), 1, Duration::from_secs(3)).unwrap();
    assert_eq!((pool.size(), pool.states()), (1, 3));
    let args = requeue::RequeueArgs {
        smtp_response: "400 busy".into(),
        insert_context: vec![],
        increment_attempts: true,
        delay: None,
        backoff: None,
    };
    let stuck = {
        let pool = pool.clone();
        let args = args.clone();
        tokio::spawn(
            async move { pool.call(Lane::Delivery, move |s| s.requeue_message(message(), &args)).await },
        )
    };
    // Let the runaway handler take the delivery state first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let (msg, result) = pool
        .call(Lane::Reception, |s| {
            s.run_message_chain("smtp_server_message_received", message(), |_| Ok(mlua::MultiValue::new()))
        })
        .await
        .unwrap();
    result.unwrap();
    assert_eq!(msg.get_meta("seen"), Some(&serde_json::json!(true)));
    assert!(started.elapsed() < Duration::from_secs(1), "reception waited {:?}", started.elapsed());
    let (_, outcome, _) = stuck.await.unwrap().unwrap();
    assert!(outcome.unwrap_err().to_string().contains("time limit"));
}
