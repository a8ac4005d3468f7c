use bytes::Bytes;
use ferry_config::PolicySource;

use super::*;
use crate::model::{Message, MessageIdGenerator};
use crate::policy::requeue;

fn policy(text: &str) -> Result<PolicyState, PolicyError> {
    let text: &'static str = Box::leak(text.to_string().into_boxed_str());
    PolicyState::load(Some(&PolicySource::Embedded { name: "test.lua", text }))
}

fn message(data: &str) -> Message {
    let g = MessageIdGenerator::new(&uuid::Uuid::new_v4());
    Message::new(
        g.generate(),
        "sender@example.com".into(),
        vec!["rcpt@Example.com".into()],
        Bytes::from(data.to_string()),
    )
}

fn received(state: &PolicyState, msg: Message) -> (Message, Result<(), PolicyError>) {
    state.run_message_chain("smtp_server_message_received", msg, |_| Ok(mlua::MultiValue::new()))
}

#[test]
fn syntax_error_names_file_and_line() {
    let err = policy("local x = 1\n\nkumo.on('init', function()\n  x = = 2\nend)\n").err().unwrap();
    let text = err.to_string();
    assert!(text.contains("test.lua:4"), "{text}");
}

#[test]
fn single_event_registered_twice_names_both_lines() {
    let err = policy("kumo.on('xfer_message_received', function() end)\nkumo.on('xfer_message_received', function() end)\n")
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(text.contains("test.lua:2"), "{text}");
    assert!(text.contains("already registered at test.lua:1"), "{text}");
    // Multiple events may be registered many times.
    assert!(
        policy("kumo.on('requeue_message', function() end)\nkumo.on('requeue_message', function() end)\n")
            .is_ok()
    );
}

#[test]
fn require_kumo_works_and_on_is_refused_inside_handlers() {
    let state = policy(
        "local kumo = require 'kumo'\nkumo.on('smtp_server_message_received', function(msg)\n  kumo.on('init', function() end)\nend)\n",
    )
    .unwrap();
    let (_, result) = received(&state, message("\r\n"));
    let Err(PolicyError::Lua(text)) = result else { panic!("expected a Lua error") };
    assert!(text.contains("only allowed while the policy loads"), "{text}");
    assert!(text.contains("test.lua:3"), "{text}");
}

#[test]
fn handlers_edit_meta_schedule_and_headers() {
    let state = policy(
        r#"
kumo.on('smtp_server_message_received', function(msg)
  msg:import_x_headers { 'tenant' }
  msg:set_meta('campaign', 'spring')
  msg:set_meta('gone', nil)
  msg:append_header('X-Seen', 'yes')
  assert(msg:get_meta('gone') == nil)
  assert(msg:sender().domain == 'example.com')
  assert(tostring(msg:recipient()) == 'rcpt@Example.com')
end)
"#,
    )
    .unwrap();
    let (msg, result) = received(&state, message("Tenant: acme\r\nX-Other: 1\r\n\r\nbody\r\n"));
    result.unwrap();
    assert_eq!(msg.get_meta("tenant"), Some(&serde_json::json!("acme")));
    assert_eq!(msg.get_meta("x_other"), None, "only the named headers are imported");
    assert_eq!(msg.get_meta("gone"), None);
    assert!(msg.meta.contains_key("gone"), "set_meta(k, nil) stores null");
    assert_eq!(msg.queue_name().unwrap(), "spring:acme@example.com");
    assert!(String::from_utf8_lossy(&msg.data).contains("X-Seen: yes\r\n\r\nbody"));
}

#[test]
fn import_x_headers_without_names_takes_every_x_header_last_wins() {
    let state =
        policy("kumo.on('smtp_server_message_received', function(msg) msg:import_x_headers() end)").unwrap();
    let (msg, _) = received(&state, message("X-Tag: a\r\nSubject: s\r\nx-tag: b\r\nX-Mailer-Id: 7\r\n\r\n"));
    assert_eq!(msg.get_meta("x_tag"), Some(&serde_json::json!("b")));
    assert_eq!(msg.get_meta("x_mailer_id"), Some(&serde_json::json!("7")));
    assert_eq!(msg.get_meta("subject"), None);
}

#[test]
fn reject_is_recognised_with_its_code() {
    let state =
        policy("kumo.on('smtp_server_message_received', function(msg) kumo.reject(552, 'no thanks') end)")
            .unwrap();
    let (_, result) = received(&state, message("\r\n"));
    assert_eq!(result, Err(PolicyError::Rejected { code: 552, text: "no thanks".into() }));
}

#[test]
fn chain_stops_on_any_returned_value_including_nil() {
    let state = policy(
        r#"
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('a', 1) end)
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('b', 1) return nil end)
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('c', 1) end)
"#,
    )
    .unwrap();
    let (msg, result) = received(&state, message("\r\n"));
    result.unwrap();
    assert!(msg.get_meta("a").is_some() && msg.get_meta("b").is_some());
    assert_eq!(msg.get_meta("c"), None, "explicit nil must stop the chain");
}

#[test]
fn runtime_error_names_the_line() {
    let state = policy(
        "kumo.on('smtp_server_message_received', function(msg)\n  local t = nil\n  return t.field\nend)\n",
    )
    .unwrap();
    let (_, result) = received(&state, message("\r\n"));
    let Err(PolicyError::Lua(text)) = result else { panic!("expected a Lua error") };
    assert!(text.contains("test.lua:3"), "{text}");
}

#[test]
fn time_delta_and_json_helpers() {
    let state = policy(
        r#"
local d = kumo.time.parse_duration('10 seconds')
assert(d.seconds == 10, 'seconds')
assert(d.milliseconds == 10000, 'ms')
assert(tostring(d) == '10s', tostring(d))
assert(kumo.time.parse_duration(20).human == '20s')
assert(d + 5 == kumo.time.parse_duration('15s'))
local t = kumo.json_parse('{"a":null,"b":[1,2]}')
assert(t.a == nil and t.b[2] == 2)
assert(kumo.json_encode({x = 1}) == '{"x":1}')
"#,
    );
    assert!(state.is_ok(), "{:?}", state.err());
}

#[tokio::test]
async fn pool_runs_jobs_and_reports_load_errors() {
    let text: &'static str =
        "kumo.on('smtp_server_message_received', function(msg) msg:set_meta('seen', true) end)";
    let pool = PolicyPool::start(Some(PolicySource::Embedded { name: "p.lua", text }), 2).unwrap();
    assert_eq!(pool.size(), 2);
    assert!(pool.has_handler("smtp_server_message_received"));
    assert!(!pool.has_handler("requeue_message"));
    let (msg, result) = pool.call(Lane::Reception, |s| received(s, message("\r\n"))).await.unwrap();
    result.unwrap();
    assert_eq!(msg.get_meta("seen"), Some(&serde_json::json!(true)));
    let bad: &'static str = "this is not lua";
    let err =
        PolicyPool::start(Some(PolicySource::Embedded { name: "bad.lua", text: bad }), 2).err().unwrap();
    assert!(err.to_string().contains("bad.lua:1"), "{err}");
}

#[test]
fn import_scheduling_header_sets_schedule_and_due_or_fails_clearly() {
    let state = policy(
        "kumo.on('smtp_server_message_received', function(msg)\n  msg:import_scheduling_header('X-Schedule')\nend)\n",
    )
    .unwrap();
    let (msg, result) = received(
        &state,
        message(
            "X-Schedule: {\"expires\":\"3000-12-31T00:00:00Z\",\"first_attempt\":\"2999-01-01T00:00:00+01:00\"}\r\n\r\nb\r\n",
        ),
    );
    result.unwrap();
    let sched = msg.schedule.expect("schedule imported");
    assert_eq!(sched.to_json()["expires"], "3000-12-31T00:00:00+00:00");
    assert_eq!(msg.due.unwrap().to_rfc3339(), "2998-12-31T23:00:00+00:00", "due pushed to first_attempt");
    assert!(String::from_utf8_lossy(&msg.data).contains("X-Schedule"), "header kept by default");

    let (msg, result) = received(&state, message("Subject: none\r\n\r\n"));
    result.unwrap();
    assert!(msg.schedule.is_none() && msg.due.is_none());

    let (_, result) = received(&state, message("X-Schedule: {\"dow\":\"Mon\"}\r\n\r\n"));
    let Err(PolicyError::Lua(text)) = result else { panic!("expected an error") };
    assert!(text.contains("missing"), "{text}");

    let remover = policy("kumo.on('smtp_server_message_received', function(msg) msg:import_scheduling_header('X-Schedule', true) end)").unwrap();
    let (msg, _) =
        received(&remover, message("X-Schedule: {\"expires\":\"3000-12-31T00:00:00Z\"}\r\n\r\nb\r\n"));
    assert!(!String::from_utf8_lossy(&msg.data).contains("X-Schedule"));
    assert!(msg.schedule.is_some());
}

#[test]
fn get_queue_config_runs_the_seed_examples_verbatim() {
    // Seed 002, each example as written.
    let state = policy(
        r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
if domain == 'smarthost.example.com' then
-- Relay via some other internal infrastructure.
-- Enclose IP (or IPv6) addresses in `[]`.
-- Otherwise the name will be resolved for A and AAAA records
return kumo.make_queue_config {
protocol = {
smtp = {
mx_list = {
'smart.host.local',
{ name = 'mx.example.com', addr = '10.0.0.1' },
},
},
},
}
end
if domain == 'maildir.example.com' then
return kumo.make_queue_config {
protocol = {
maildir_path = '/var/tmp/kumo-maildir',
},
}
end
if domain == 'webhook' then
return kumo.make_queue_config {
protocol = {
custom_lua = {
constructor = 'make.webhook',
},
},
}
end
if domain == 'aged.example.com' then
return kumo.make_queue_config {
-- Age out messages after being in the queue for 20 minutes
max_age = '20 minutes',
}
end
if domain == 'capped.example.com' then
return kumo.make_queue_config {
max_retry_interval = '1 hour',
retry_interval = '20 minutes',
}
end
-- Otherwise, just use the defaults
return kumo.make_queue_config {}
end)
"#,
    )
    .unwrap();
    use crate::model::queue_config::Protocol;
    use crate::model::queue_name::parse;
    let cfg = |q: &str| state.get_queue_config(&parse(q)).unwrap();
    assert!(matches!(cfg("smarthost.example.com").protocol, Protocol::SmtpList(ref l) if l.len() == 2));
    assert!(matches!(cfg("maildir.example.com").protocol, Protocol::Maildir { .. }));
    assert!(matches!(cfg("webhook").protocol, Protocol::CustomLua { .. }));
    assert_eq!(cfg("aged.example.com").max_age.0.as_secs(), 1200);
    assert_eq!(cfg("capped.example.com").max_retry_interval.unwrap().0.as_secs(), 3600);
    assert_eq!(cfg("other.example.com").retry_interval.0.as_secs(), 1200);
}

#[test]
fn get_queue_config_chain_and_errors() {
    let state = policy(
        r#"
kumo.on('get_queue_config', function(domain, tenant) if tenant == 'skip' then return nil end end)
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  if domain == 'bad.example.com' then
    return kumo.make_queue_config { retry_intervall = '5s' }
  end
  return kumo.make_queue_config { retry_interval = tenant == 'skip' and '7s' or '5s' }
end)
"#,
    )
    .unwrap();
    use crate::model::queue_name::parse;
    assert_eq!(state.get_queue_config(&parse("skip@a.com")).unwrap().retry_interval.0.as_secs(), 7);
    assert_eq!(state.get_queue_config(&parse("a.com")).unwrap().retry_interval.0.as_secs(), 5);
    let err = state.get_queue_config(&parse("bad.example.com")).unwrap_err().to_string();
    assert!(err.contains("retry_intervall") && err.contains("test.lua:5"), "{err}");
    let none = policy("").unwrap();
    assert_eq!(
        none.get_queue_config(&parse("x.com")).unwrap(),
        crate::model::queue_config::QueueConfig::default()
    );
}

fn requeue_args() -> requeue::RequeueArgs {
    requeue::RequeueArgs {
        smtp_response: "400 4.0.0 tempfail requested".into(),
        insert_context: vec!["LoggedTransientFailure".into()],
        increment_attempts: true,
        delay: None,
        backoff: None,
    }
}

#[test]
fn requeue_handlers_see_the_spec_arguments_and_attempts_before_the_increment() {
    let state = policy(
        r#"
kumo.on('requeue_message', function(msg, smtp_response, insert_context, increment_attempts, delay)
  msg:set_meta('seen', table.concat({ smtp_response, table.concat(insert_context, ','),
    tostring(increment_attempts), tostring(delay), tostring(msg:num_attempts()) }, '|'))
end)
"#,
    )
    .unwrap();
    let mut m = message("\r\n");
    m.num_attempts = 2;
    let (msg, result, _) = state.requeue_message(m, &requeue_args());
    result.unwrap();
    assert_eq!(
        msg.get_meta("seen"),
        Some(&serde_json::json!("400 4.0.0 tempfail requested|LoggedTransientFailure|true|nil|2"))
    );
    let mut with_delay = requeue_args();
    with_delay.delay = Some(std::time::Duration::from_secs(90));
    with_delay.increment_attempts = false;
    let (msg, _, _) = state.requeue_message(message("\r\n"), &with_delay);
    assert_eq!(
        msg.get_meta("seen"),
        Some(&serde_json::json!("400 4.0.0 tempfail requested|LoggedTransientFailure|false|1m 30s|0"))
    );
}

#[test]
fn requeue_chain_stops_on_nil_and_on_reject() {
    let state = policy(
        r#"
kumo.on('requeue_message', function(msg) msg:set_meta('first', true) end)
kumo.on('requeue_message', function(msg)
  if msg:recipient().user == 'reject' then kumo.reject(421, 'no') end
  if msg:recipient().user == 'stop' then return nil end
end)
kumo.on('requeue_message', function(msg) msg:set_meta('third', true) end)
"#,
    )
    .unwrap();
    let with_rcpt =
        |user: &str| Message { recipients: vec![format!("{user}@example.com")], ..message("\r\n") };
    let (msg, result, _) = state.requeue_message(with_rcpt("go"), &requeue_args());
    result.unwrap();
    assert!(msg.get_meta("first").is_some() && msg.get_meta("third").is_some());
    let (msg, result, _) = state.requeue_message(with_rcpt("stop"), &requeue_args());
    result.unwrap();
    assert_eq!(msg.get_meta("third"), None, "explicit nil stops the chain");
    let (msg, result, _) = state.requeue_message(with_rcpt("reject"), &requeue_args());
    assert_eq!(result, Err(PolicyError::Rejected { code: 421, text: "no".into() }));
    assert_eq!(msg.get_meta("third"), None, "later handlers are not called after a reject");
}

#[test]
fn a_runaway_handler_hits_the_time_limit() {
    let text: &'static str = "kumo.on('requeue_message', function(msg) while true do end end)";
    let state = PolicyState::load_with_timeout(
        Some(&PolicySource::Embedded { name: "loop.lua", text }),
        std::time::Duration::from_millis(200),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let (_, result, _) = state.requeue_message(message("\r\n"), &requeue_args());
    let Err(PolicyError::Lua(text)) = result else { panic!("expected a time-limit error") };
    assert!(text.contains("time limit"), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn set_due_applies_the_schedule_and_nil_means_now() {
    let state = policy(
        r#"
kumo.on('smtp_server_message_received', function(msg)
  msg:set_scheduling { first_attempt = '2999-01-01T00:00:00+00:00' }
  local due = msg:set_due('2030-01-01T00:00:00Z')
  msg:set_meta('due', due)
end)
"#,
    )
    .unwrap();
    let (msg, result) = received(&state, message("\r\n"));
    result.unwrap();
    assert_eq!(msg.get_meta("due"), Some(&serde_json::json!("2999-01-01T00:00:00+00:00")));
}

#[test]
fn kumo_http_outside_a_custom_lua_connection_says_where_it_works() {
    let state =
        policy("kumo.on('smtp_server_message_received', function(msg)\n  kumo.http.build_client {}\nend)\n")
            .unwrap();
    let (_, result) = received(&state, message("Subject: x\r\n\r\nx\r\n"));
    let e = result.unwrap_err().to_string();
    assert!(e.contains("test.lua:2") && e.contains("custom_lua"), "{e}");
}

#[test]
fn configure_log_hook_checks_its_parameters() {
    for (params, want) in [
        ("{ name = 'h', per_record = { Deliveries = { enable = true } } }", "Deliveries"),
        ("{ name = 'h', colour = 'red' }", "colour"),
        ("{ name = '' }", "name"),
    ] {
        let state = policy(&format!(
            "kumo.on('smtp_server_message_received', function(msg)\n  kumo.configure_log_hook {params}\nend)\n"
        ))
        .unwrap();
        let (_, result) = received(&state, message("Subject: x\r\n\r\nx\r\n"));
        let e = result.unwrap_err().to_string();
        assert!(e.contains("configure_log_hook") && e.contains(want), "{params}: {e}");
    }
}
