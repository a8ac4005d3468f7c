-- Ferry example policy. Events and the `kumo` module follow KumoMTA's Lua API.
local kumo = require 'kumo'

-- Runs for every message received over SMTP, before it is written to the spool.
kumo.on('smtp_server_message_received', function(msg)
  -- Honour an X-Schedule header (delivery windows, expiry) and copy the Tenant header to meta.
  msg:import_scheduling_header('X-Schedule')
  msg:import_x_headers { 'tenant' }
  -- DKIM-sign with the From domain's key (signers are cached per parameters; a missing key
  -- refuses the message with 451 rather than sending it unsigned):
  -- msg:dkim_sign(kumo.dkim.rsa_sha256_signer {
  --   domain = msg:from_header().domain, selector = 'default',
  --   headers = { 'From', 'To', 'Subject', 'Date', 'Message-ID' },
  --   key = '/etc/ferry/dkim/' .. msg:from_header().domain .. '.pem',
  -- })
end)

-- Every queue: the defaults (SMTP via MX, 20 minute backoff doubling, 7 day expiry).
-- Return kumo.make_queue_config { ... } to change them per domain, tenant or campaign.
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {}
end)

-- After a message has failed twice, send it through a smart host instead (seed 001).
-- Uncomment and set SMART_HOST to use it.
-- local SMART_HOST = '[192.0.2.1]'
-- kumo.on('requeue_message', function(msg)
--   if msg:get_queue_name() ~= SMART_HOST and msg:num_attempts() >= 2 then
--     msg:set_meta('queue', SMART_HOST)
--     msg:set_scheduling(nil)
--   end
-- end)
