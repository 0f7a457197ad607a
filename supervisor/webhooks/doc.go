// Package webhooks delivers a job's events to the webhooks named in its --webhook_config
// (docs/compatibility.md §8): "raw" receivers get the structured event as a JSON POST, "discord"
// receivers get a chat message with the event's images attached.
//
// Delivery never slows the trainer or the event hub: Publish only appends to a bounded
// per-webhook queue, and one goroutine per webhook drains it with retries, exponential
// backoff with jitter, and an idempotency header (the event id, stable across retries), so
// receivers see each event at least once. When a queue is full the oldest progress-like
// event is dropped and counted; lifecycle, checkpoint, validation and error events are
// never dropped to make room for progress. --webhook_reporting_interval throttles progress
// events per webhook; log_level filters by severity.
//
// A webhook URL is user input pointing the daemon at an arbitrary host, so every request
// goes through a guarded dialer (docs/security.md rows W1, W3): link-local, unspecified,
// multicast and cloud metadata addresses are always refused, private and loopback ones
// when Policy.DenyPrivate is set. The check runs when the configuration is validated and
// again in the dialer's Control hook on the address actually being connected to, so DNS
// rebinding cannot slip past it. Redirects are never followed, proxies are never used,
// each attempt has a total timeout (10 s at most) and at most 64 KiB of a response is read.
//
// Webhook URLs often carry their secret in the path (Discord, Slack), so the package never
// logs a URL beyond scheme and host (RedactURL) and never logs auth tokens.
package webhooks
