//! Slack: a [`Notification`] as an incoming-webhook body, and the contract
//! every body we send must meet.
//!
//! The body is Block Kit `blocks` (a header, the summary, the evidence as
//! `fields`, and a context line with the pool, when the condition was first
//! seen and the runbook link) plus a plain `text` fallback, which Slack
//! shows in push notifications and where blocks cannot be displayed.
//!
//! Every string of a notification may hold text that came from requests (a
//! release id, an address, a URI), so it is escaped the way Slack asks
//! (`&`, `<`, `>` become entities) before it lands in the body: otherwise a
//! release id like `<!channel>` would page the whole channel and
//! `<http://evil|click>` would become a disguised link. The only markup we
//! add ourselves is the runbook link, in the context block.
//!
//! Slack rejects the whole message (`invalid_blocks`) when a block breaks a
//! limit, and an alert that is refused is worse than a shortened one, so
//! every piece is cut to its limit on a character boundary, marked with
//! `…`. [`check_contract`] checks a body against all of this; tests use it
//! on what reaches the fake webhook, and [`body`] checks each body before
//! it is queued.
//!
//! The webhook URL is a credential (anyone holding it can post to the
//! channel): the [`Slack`] transport keeps it in a `Secret` and posts
//! through the shared HTTP endpoint, which redacts it from every reason.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::alerting::delivery::http::Endpoint;
use crate::alerting::delivery::retry::{Failure, Transport};
use crate::alerting::finding::Severity;
use crate::alerting::wording::Notification;
use crate::secret::Secret;

/// Checks that `url` is an absolute http(s) URL with a host, with a message
/// that does not repeat it, for settings validation.
pub(crate) fn check_webhook_url(url: &Secret) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url.expose())
        .map_err(|e| format!("the Slack webhook URL is not a valid URL ({e})"))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err("the Slack webhook URL must start with https://".into());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("the Slack webhook URL has no host".into());
    }
    Ok(())
}

/// Slack's incoming webhook as a delivery transport.
pub(crate) struct Slack {
    endpoint: WebhookSwitch,
}

impl Slack {
    /// Fails when the URL is not an http(s) URL or the HTTPS client cannot
    /// be built: start-up problems, better reported before the first
    /// incident. The reason never holds the URL.
    pub(crate) fn new(url: &Secret, timeout: Duration) -> Result<Slack, String> {
        let endpoint = WebhookSwitch::endpoint(url, timeout)?;
        Ok(Slack {
            endpoint: WebhookSwitch {
                current: Arc::new(RwLock::new(Arc::new(endpoint))),
                timeout,
            },
        })
    }

    /// The handle a reload swaps the URL with.
    pub(crate) fn switch(&self) -> WebhookSwitch {
        self.endpoint.clone()
    }
}

impl Transport for Slack {
    async fn send(&self, body: Bytes) -> Result<(), Failure> {
        // Each attempt takes the URL in force when it starts: a retry after
        // a reload goes to the new one.
        let endpoint = self.endpoint.get();
        endpoint.post_json(body).await
    }
}

/// The webhook a running Slack sink posts to, replaceable by a reload.
/// Read once per attempt, never held across one.
#[derive(Clone)]
pub struct WebhookSwitch {
    current: Arc<RwLock<Arc<Endpoint>>>,
    timeout: Duration,
}

impl WebhookSwitch {
    fn endpoint(url: &Secret, timeout: Duration) -> Result<Endpoint, String> {
        check_webhook_url(url)?;
        Endpoint::new("Slack", url, None, timeout)
    }

    fn get(&self) -> Arc<Endpoint> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Check `url` and build its client, without using it yet: a reload
    /// validates everything before it changes anything.
    pub fn prepare(&self, url: &Secret) -> Result<PreparedWebhook, String> {
        Ok(PreparedWebhook(Arc::new(Self::endpoint(
            url,
            self.timeout,
        )?)))
    }

    /// Post to `next` from the next attempt on.
    pub fn set(&self, next: PreparedWebhook) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next.0;
    }
}

/// A checked webhook URL with its client, ready for [`WebhookSwitch::set`].
pub struct PreparedWebhook(Arc<Endpoint>);

/// `n` as the bytes to POST, rendered and checked once.
pub(crate) fn body(n: &Notification) -> Bytes {
    let body = render(n);
    let checked = check_contract(&body);
    debug_assert!(checked.is_ok(), "rendered Slack body: {checked:?}");
    if let Err(e) = checked {
        tracing::warn!(kind = n.kind.label(), error = %e, "Slack body breaks the webhook contract; sending anyway");
    }
    Bytes::from(serde_json::to_vec(&body).expect("a JSON value serializes"))
}

/// Most blocks Slack accepts in one message.
pub(crate) const MAX_BLOCKS: usize = 50;
/// Longest header text (plain text), in characters.
pub(crate) const HEADER_MAX: usize = 150;
/// Longest section text, in characters.
pub(crate) const SECTION_TEXT_MAX: usize = 3000;
/// Longest text of one section field, in characters.
pub(crate) const FIELD_MAX: usize = 2000;
/// Most fields in one section.
pub(crate) const FIELDS_PER_SECTION: usize = 10;
/// Longest context element text we produce or accept, in characters.
pub(crate) const CONTEXT_TEXT_MAX: usize = 2000;
/// Most elements in one context block.
pub(crate) const CONTEXT_ELEMENTS_MAX: usize = 10;
/// Longest top-level `text` fallback we produce or accept, in characters.
/// Slack takes more, but a fallback is read in a notification banner.
pub(crate) const TEXT_MAX: usize = 4000;
/// Longest `block_id` Slack accepts.
const BLOCK_ID_MAX: usize = 255;
/// Most elements in an actions block.
const ACTION_ELEMENTS_MAX: usize = 25;

/// Longest field label; the rest of a field's 2000 characters is left to
/// the value, which is what carries the evidence.
const LABEL_MAX: usize = 200;
/// Longest runbook URL we turn into a link; anything longer is shown as
/// text, since a link Slack cannot open is no help.
const LINK_URL_MAX: usize = 1000;

const ELLIPSIS: char = '…';

/// The emoji that opens the header: the first thing read in a busy channel.
pub(crate) fn emoji(n: &Notification) -> &'static str {
    if n.resolved {
        return "✅";
    }
    match n.severity {
        Severity::Critical => "🔴",
        Severity::Warning => "🟠",
        Severity::Info => "🔵",
        Severity::Resolved => "✅",
    }
}

/// Renders `n` as an incoming-webhook body. The result always passes
/// [`check_contract`], whatever the notification holds.
pub(crate) fn render(n: &Notification) -> Value {
    let emoji = emoji(n);
    let mut blocks = Vec::new();

    // Header: emoji, one space, then as much of the title as fits.
    let title_room = HEADER_MAX - emoji.chars().count() - 1;
    let header = format!("{emoji} {}", escape_capped(&one_line(&n.title), title_room));
    blocks.push(json!({
        "type": "header",
        "text": { "type": "plain_text", "text": header, "emoji": true },
    }));

    let summary = escape_capped(&clean(&n.summary), SECTION_TEXT_MAX);
    if !summary.trim().is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": summary },
        }));
    }

    let context = context_elements(n);
    // Header, summary and context are fixed; the fields get what is left.
    let sections_room = MAX_BLOCKS - blocks.len() - usize::from(!context.is_empty());
    let mut fields: Vec<Value> = n
        .fields
        .iter()
        .filter_map(|(label, value)| field_text(label, value))
        .map(|text| json!({ "type": "mrkdwn", "text": text }))
        .collect();
    let room = sections_room * FIELDS_PER_SECTION;
    if fields.len() > room {
        // Say how much is missing rather than drop it silently.
        let hidden = fields.len() - (room - 1);
        fields.truncate(room - 1);
        fields.push(json!({
            "type": "mrkdwn",
            "text": format!("*{ELLIPSIS}*\n{hidden} more fields not shown"),
        }));
    }
    for chunk in fields.chunks(FIELDS_PER_SECTION) {
        blocks.push(json!({ "type": "section", "fields": chunk }));
    }

    if !context.is_empty() {
        blocks.push(json!({ "type": "context", "elements": context }));
    }

    json!({
        "text": fallback_text(emoji, n),
        "blocks": blocks,
        // Field values can hold URLs from requests: no previews of those.
        "unfurl_links": false,
        "unfurl_media": false,
    })
}

/// `*label*\nvalue`, or `None` when both are empty (Slack refuses an empty
/// field).
fn field_text(label: &str, value: &str) -> Option<String> {
    let label = escape_capped(&one_line(label), LABEL_MAX);
    let value = clean(value);
    match (label.trim().is_empty(), value.trim().is_empty()) {
        (true, true) => None,
        (true, false) => Some(escape_capped(&value, FIELD_MAX)),
        (false, true) => Some(format!("*{label}*")),
        (false, false) => {
            let room = FIELD_MAX - label.chars().count() - 3;
            Some(format!("*{label}*\n{}", escape_capped(&value, room)))
        }
    }
}

fn context_elements(n: &Notification) -> Vec<Value> {
    let mrkdwn = |text: String| json!({ "type": "mrkdwn", "text": text });
    let mut elements = Vec::new();
    if let Some(pool) = n.pool.as_deref().filter(|p| !p.trim().is_empty()) {
        let room = CONTEXT_TEXT_MAX - "*Pool:* ".len();
        elements.push(mrkdwn(format!(
            "*Pool:* {}",
            escape_capped(&one_line(pool), room)
        )));
    }
    if !n.first_seen.trim().is_empty() {
        let room = CONTEXT_TEXT_MAX - "First seen ".len();
        elements.push(mrkdwn(format!(
            "First seen {}",
            escape_capped(&one_line(&n.first_seen), room)
        )));
    }
    if let Some(url) = n.runbook_url.as_deref().filter(|u| !u.trim().is_empty()) {
        elements.push(mrkdwn(match link_target(url) {
            Some(target) => format!("<{target}|Runbook>"),
            None => {
                let room = CONTEXT_TEXT_MAX - "Runbook: ".len();
                format!("Runbook: {}", escape_capped(&one_line(url), room))
            }
        }));
    }
    // Checked at start-up to be an http(s) URL; one that still cannot be
    // a link is left out rather than shown as text nobody can open.
    if let Some(target) = n.status_url.as_deref().and_then(link_target) {
        elements.push(mrkdwn(format!("<{target}|Status page>")));
    }
    elements
}

fn fallback_text(emoji: &str, n: &Notification) -> String {
    let title = escape_capped(&one_line(&n.title), TEXT_MAX / 4);
    let head = format!("{emoji} {title}");
    let summary = clean(&n.summary);
    if summary.trim().is_empty() {
        return head;
    }
    let room = TEXT_MAX - head.chars().count() - 1;
    format!("{head}\n{}", escape_capped(&summary, room))
}

/// The URL as the target of a `<url|label>` link, or `None` when it is not
/// a plain http(s) URL. Characters that would end the link early are
/// percent-encoded, and `&` becomes `&amp;` as Slack asks inside links too.
fn link_target(url: &str) -> Option<String> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let scheme_ok = lower.starts_with("https://") || lower.starts_with("http://");
    if !scheme_ok
        || url.chars().count() > LINK_URL_MAX
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return None;
    }
    let mut out = String::with_capacity(url.len());
    for c in url.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("%3C"),
            '>' => out.push_str("%3E"),
            '|' => out.push_str("%7C"),
            _ => out.push(c),
        }
    }
    Some(out)
}

/// Escapes `&`, `<` and `>` as Slack asks for text that is not markup.
#[cfg(test)]
fn escape(s: &str) -> String {
    escape_capped(s, usize::MAX)
}

fn escaped_len(c: char) -> usize {
    match c {
        '&' => 5,
        '<' | '>' => 4,
        _ => 1,
    }
}

/// [`escape`], then at most `max` characters (at least 1): a longer result
/// is cut and ends with `…`. The cut never splits an entity, so the text
/// stays well-formed.
pub(crate) fn escape_capped(s: &str, max: usize) -> String {
    let total: usize = s.chars().map(escaped_len).sum();
    let budget = if total <= max {
        total
    } else {
        max.saturating_sub(1)
    };
    let mut out = String::with_capacity(s.len().min(budget * 4) + 8);
    let mut used = 0;
    for c in s.chars() {
        let len = escaped_len(c);
        if used + len > budget {
            out.push(ELLIPSIS);
            return out;
        }
        used += len;
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// Drops control characters except newlines, and the bidirectional
/// overrides that could make a value read backwards.
fn clean(s: &str) -> String {
    s.chars()
        .filter(|&c| c == '\n' || !(c.is_control() || is_bidi_control(c)))
        .collect()
}

/// [`clean`], with line breaks and tabs as spaces: for headers, labels and
/// other one-line places.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if matches!(c, '\n' | '\r' | '\t') {
                ' '
            } else {
                c
            }
        })
        .filter(|&c| !(c.is_control() || is_bidi_control(c)))
        .collect()
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

/// Checks `body` against the incoming-webhook contract poolwatch relies on,
/// returning the first violation found, with its JSON path.
///
/// - a JSON object with a non-empty `text` of at most [`TEXT_MAX`]
///   characters, a `blocks` array of 1 to [`MAX_BLOCKS`] blocks, and
///   optionally the booleans `unfurl_links`, `unfurl_media`, `mrkdwn`;
/// - each block a `header`, `section`, `context`, `divider` or `actions`
///   with only the keys Slack defines for it, within Slack's limits
///   (header 150, section text 3000, 10 fields of 2000 each);
/// - each text object `plain_text` or `mrkdwn` with a non-empty `text`;
/// - no raw `&`, `<` or `>` in any text: only the entities `&amp;`, `&lt;`,
///   `&gt;`, and in context elements (where poolwatch puts its runbook
///   link) Slack's `<http(s)://…|label>` link syntax. Mentions such as
///   `<!channel>` or `<@U…>` are violations everywhere.
pub fn check_contract(body: &Value) -> Result<(), String> {
    let obj = body.as_object().ok_or("body is not a JSON object")?;
    for (key, value) in obj {
        match key.as_str() {
            "text" | "blocks" => {}
            "unfurl_links" | "unfurl_media" | "mrkdwn" => {
                if !value.is_boolean() {
                    return Err(format!("{key}: not a boolean"));
                }
            }
            other => return Err(format!("unknown top-level key {other:?}")),
        }
    }

    let text = obj
        .get("text")
        .ok_or("missing \"text\" fallback")?
        .as_str()
        .ok_or("text: not a string")?;
    check_str("text", text, TEXT_MAX, false)?;

    let blocks = obj
        .get("blocks")
        .ok_or("missing \"blocks\"")?
        .as_array()
        .ok_or("blocks: not an array")?;
    if blocks.is_empty() {
        return Err("blocks: empty".into());
    }
    if blocks.len() > MAX_BLOCKS {
        return Err(format!(
            "blocks: {} blocks, Slack accepts at most {MAX_BLOCKS}",
            blocks.len()
        ));
    }
    for (i, block) in blocks.iter().enumerate() {
        check_block(&format!("blocks[{i}]"), block)?;
    }
    Ok(())
}

fn check_block(path: &str, block: &Value) -> Result<(), String> {
    let obj = block
        .as_object()
        .ok_or_else(|| format!("{path}: not an object"))?;
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{path}: missing \"type\""))?;
    let allowed: &[&str] = match kind {
        "header" => &["type", "block_id", "text"],
        "section" => &["type", "block_id", "text", "fields"],
        "context" => &["type", "block_id", "elements"],
        "divider" => &["type", "block_id"],
        "actions" => &["type", "block_id", "elements"],
        other => return Err(format!("{path}: unknown block type {other:?}")),
    };
    only_keys(path, obj, allowed)?;
    if let Some(id) = obj.get("block_id") {
        let id = id
            .as_str()
            .ok_or_else(|| format!("{path}.block_id: not a string"))?;
        if id.is_empty() || id.chars().count() > BLOCK_ID_MAX {
            return Err(format!(
                "{path}.block_id: must be 1 to {BLOCK_ID_MAX} characters"
            ));
        }
    }

    match kind {
        "header" => {
            let text = obj
                .get("text")
                .ok_or_else(|| format!("{path}: header without text"))?;
            check_text_object(
                &format!("{path}.text"),
                text,
                &["plain_text"],
                HEADER_MAX,
                false,
            )
        }
        "section" => {
            let text = obj.get("text");
            let fields = obj.get("fields");
            if text.is_none() && fields.is_none() {
                return Err(format!("{path}: section needs text or fields"));
            }
            if let Some(text) = text {
                let p = format!("{path}.text");
                check_text_object(&p, text, &["plain_text", "mrkdwn"], SECTION_TEXT_MAX, false)?;
            }
            if let Some(fields) = fields {
                let fields = fields
                    .as_array()
                    .ok_or_else(|| format!("{path}.fields: not an array"))?;
                if fields.is_empty() || fields.len() > FIELDS_PER_SECTION {
                    return Err(format!(
                        "{path}.fields: {} fields, Slack accepts 1 to {FIELDS_PER_SECTION}",
                        fields.len()
                    ));
                }
                for (i, field) in fields.iter().enumerate() {
                    let p = format!("{path}.fields[{i}]");
                    check_text_object(&p, field, &["plain_text", "mrkdwn"], FIELD_MAX, false)?;
                }
            }
            Ok(())
        }
        "context" => {
            let elements = elements(path, obj, CONTEXT_ELEMENTS_MAX)?;
            for (i, element) in elements.iter().enumerate() {
                let p = format!("{path}.elements[{i}]");
                match element.get("type").and_then(Value::as_str) {
                    Some("image") => check_image(&p, element)?,
                    _ => check_text_object(
                        &p,
                        element,
                        &["plain_text", "mrkdwn"],
                        CONTEXT_TEXT_MAX,
                        true,
                    )?,
                }
            }
            Ok(())
        }
        "actions" => {
            let elements = elements(path, obj, ACTION_ELEMENTS_MAX)?;
            for (i, element) in elements.iter().enumerate() {
                if element.get("type").and_then(Value::as_str).is_none() {
                    return Err(format!("{path}.elements[{i}]: missing \"type\""));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn elements<'a>(
    path: &str,
    obj: &'a Map<String, Value>,
    max: usize,
) -> Result<&'a Vec<Value>, String> {
    let elements = obj
        .get("elements")
        .ok_or_else(|| format!("{path}: missing \"elements\""))?
        .as_array()
        .ok_or_else(|| format!("{path}.elements: not an array"))?;
    if elements.is_empty() || elements.len() > max {
        return Err(format!(
            "{path}.elements: {} elements, Slack accepts 1 to {max}",
            elements.len()
        ));
    }
    Ok(elements)
}

fn check_image(path: &str, element: &Value) -> Result<(), String> {
    let obj = element
        .as_object()
        .ok_or_else(|| format!("{path}: not an object"))?;
    only_keys(path, obj, &["type", "image_url", "alt_text"])?;
    for key in ["image_url", "alt_text"] {
        if obj
            .get(key)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(format!("{path}: image without {key}"));
        }
    }
    Ok(())
}

fn check_text_object(
    path: &str,
    value: &Value,
    types: &[&str],
    max: usize,
    links: bool,
) -> Result<(), String> {
    let obj = value
        .as_object()
        .ok_or_else(|| format!("{path}: not a text object"))?;
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{path}: text object without \"type\""))?;
    if !types.contains(&kind) {
        return Err(format!(
            "{path}: type {kind:?} not allowed here (expected {types:?})"
        ));
    }
    match kind {
        "plain_text" => only_keys(path, obj, &["type", "text", "emoji"])?,
        _ => only_keys(path, obj, &["type", "text", "verbatim"])?,
    }
    for flag in ["emoji", "verbatim"] {
        if obj.get(flag).is_some_and(|v| !v.is_boolean()) {
            return Err(format!("{path}.{flag}: not a boolean"));
        }
    }
    let text = obj
        .get("text")
        .ok_or_else(|| format!("{path}: text object without \"text\""))?
        .as_str()
        .ok_or_else(|| format!("{path}.text: not a string"))?;
    // Slack renders no links in plain text, so none belong there.
    check_str(
        &format!("{path}.text"),
        text,
        max,
        links && kind == "mrkdwn",
    )
}

fn only_keys(path: &str, obj: &Map<String, Value>, allowed: &[&str]) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("{path}: unexpected key {k:?}")),
        None => Ok(()),
    }
}

fn check_str(path: &str, text: &str, max: usize, links: bool) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err(format!("{path}: empty"));
    }
    let len = text.chars().count();
    if len > max {
        return Err(format!("{path}: {len} characters, at most {max} allowed"));
    }
    check_escaped(text, links).map_err(|e| format!("{path}: {e}"))
}

/// Finds a raw `&`, `<` or `>` that Slack would read as markup. With
/// `links`, `<http(s)://…>` and `<http(s)://…|label>` are allowed.
fn check_escaped(text: &str, links: bool) -> Result<(), String> {
    let at = |i: usize| {
        let snippet: String = text[i..].chars().take(24).collect();
        format!("at byte {i} ({snippet:?})")
    };
    let mut i = 0;
    while let Some(off) = text[i..].find(['&', '<', '>']) {
        i += off;
        let rest = &text[i..];
        if rest.starts_with('&') {
            if !["&amp;", "&lt;", "&gt;"]
                .iter()
                .any(|e| rest.starts_with(e))
            {
                return Err(format!("unescaped '&' {}", at(i)));
            }
            i += 1;
        } else if rest.starts_with('>') {
            return Err(format!("unescaped '>' {}", at(i)));
        } else {
            if !links {
                return Err(format!("unescaped '<' {}", at(i)));
            }
            let end = rest
                .find('>')
                .ok_or_else(|| format!("unterminated '<' {}", at(i)))?;
            check_link(&rest[1..end]).map_err(|e| format!("{e} {}", at(i)))?;
            i += end + 1;
        }
    }
    Ok(())
}

fn check_link(inner: &str) -> Result<(), String> {
    let (target, label) = match inner.split_once('|') {
        Some((target, label)) => (target, Some(label)),
        None => (inner, None),
    };
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    let scheme_len = if lower.starts_with("https://") {
        8
    } else if lower.starts_with("http://") {
        7
    } else {
        return Err("'<' that is not an http(s) link".into());
    };
    if target.len() == scheme_len || target.chars().any(|c| c.is_whitespace() || c == '<') {
        return Err("malformed link target".into());
    }
    check_escaped(target, false).map_err(|e| format!("link target: {e}"))?;
    if let Some(label) = label {
        if label.trim().is_empty() {
            return Err("link with an empty label".into());
        }
        check_escaped(label, false).map_err(|e| format!("link label: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::finding::Kind;

    const HOSTILE: &str = "<!channel> & <http://evil|click>";

    fn notification() -> Notification {
        Notification {
            kind: Kind::Failover,
            severity: Severity::Critical,
            pool: Some("blue".into()),
            title: "Failover: blue → green".into(),
            summary: "blue fails 40% of attempts; green serves.".into(),
            fields: vec![
                ("Error ratio".into(), "0.40".into()),
                ("Release".into(), "blue-42".into()),
            ],
            first_seen: "2026-11-05T09:07:03Z".into(),
            resolved: false,
            runbook_url: Some("https://example.com/RUNBOOK.md#failover".into()),
            status_url: Some("https://poolwatch.example.com/".into()),
        }
    }

    fn all_texts(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|v| all_texts(v, out)),
            Value::Object(o) => o.values().for_each(|v| all_texts(v, out)),
            _ => {}
        }
    }

    fn field_texts(body: &Value) -> Vec<String> {
        body["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b.get("fields"))
            .flat_map(|f| f.as_array().unwrap().iter())
            .map(|f| f["text"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn webhook_url_checks_do_not_repeat_the_url() {
        let url = "https://hooks.slack.com/services/T000/B000/XXXXSECRET";
        assert!(check_webhook_url(&Secret::new(url)).is_ok());
        for bad in [
            "hooks.slack.com/XXXXSECRET",
            "ftp://h/XXXXSECRET",
            "https://[XXXXSECRET/",
        ] {
            let e = check_webhook_url(&Secret::new(bad)).unwrap_err();
            assert!(!e.contains("XXXX"), "{e}");
        }
    }

    #[test]
    fn renders_header_summary_fields_and_context() {
        let body = render(&notification());
        check_contract(&body).unwrap();
        let blocks = body["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 4);
        assert_eq!(blocks[0]["text"]["text"], "🔴 Failover: blue → green");
        assert_eq!(
            blocks[1]["text"]["text"],
            "blue fails 40% of attempts; green serves."
        );
        assert_eq!(
            field_texts(&body),
            ["*Error ratio*\n0.40", "*Release*\nblue-42"]
        );
        let context: Vec<_> = blocks[3]["elements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            context,
            [
                "*Pool:* blue",
                "First seen 2026-11-05T09:07:03Z",
                "<https://example.com/RUNBOOK.md#failover|Runbook>",
                "<https://poolwatch.example.com/|Status page>"
            ]
        );
        assert_eq!(
            body["text"],
            "🔴 Failover: blue → green\nblue fails 40% of attempts; green serves."
        );
    }

    #[test]
    fn emoji_follows_severity_and_resolution() {
        let mut n = notification();
        for (severity, expected) in [
            (Severity::Critical, "🔴"),
            (Severity::Warning, "🟠"),
            (Severity::Info, "🔵"),
            (Severity::Resolved, "✅"),
        ] {
            n.severity = severity;
            assert_eq!(emoji(&n), expected);
        }
        n.severity = Severity::Critical;
        n.resolved = true;
        assert_eq!(emoji(&n), "✅");
    }

    #[test]
    fn hostile_text_is_escaped_everywhere() {
        let mut n = notification();
        n.title = format!("Failover {HOSTILE}");
        n.summary = format!("release {HOSTILE}");
        n.pool = Some(HOSTILE.into());
        n.first_seen = HOSTILE.into();
        n.fields = vec![(HOSTILE.into(), HOSTILE.into())];
        let body = render(&n);
        check_contract(&body).unwrap();

        let escaped = "&lt;!channel&gt; &amp; &lt;http://evil|click&gt;";
        assert_eq!(escape(HOSTILE), escaped);
        let mut texts = Vec::new();
        all_texts(&body, &mut texts);
        for t in &texts {
            assert!(!t.contains("<!channel>"), "{t}");
            assert!(!t.contains("<http://evil"), "{t}");
        }
        assert_eq!(field_texts(&body), [format!("*{escaped}*\n{escaped}")]);
        assert!(body["text"].as_str().unwrap().contains(escaped));
        assert!(
            body["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .ends_with(escaped)
        );
        // The links are ours.
        let links = texts.iter().filter(|t| t.contains("|Runbook>")).count();
        assert_eq!(links, 1);
        let links = texts.iter().filter(|t| t.contains("|Status page>")).count();
        assert_eq!(links, 1);
    }

    #[test]
    fn a_10_kb_field_is_cut_to_slacks_limit() {
        let mut n = notification();
        n.fields = vec![("Body".into(), "x".repeat(10 * 1024))];
        n.summary = "é".repeat(10 * 1024);
        n.title = "t".repeat(1000);
        let body = render(&n);
        check_contract(&body).unwrap();

        let field = &field_texts(&body)[0];
        assert_eq!(field.chars().count(), FIELD_MAX);
        assert!(field.starts_with("*Body*\nxxx"));
        assert!(field.ends_with("x…"));
        let summary = body["blocks"][1]["text"]["text"].as_str().unwrap();
        assert_eq!(summary.chars().count(), SECTION_TEXT_MAX);
        assert!(summary.ends_with("é…"));
        let header = body["blocks"][0]["text"]["text"].as_str().unwrap();
        assert_eq!(header.chars().count(), HEADER_MAX);
        assert!(body["text"].as_str().unwrap().chars().count() <= TEXT_MAX);
    }

    #[test]
    fn truncation_never_splits_an_entity() {
        for max in 1..12 {
            let s = escape_capped("a<<<<<<<<", max);
            assert!(s.chars().count() <= max, "{max}: {s}");
            assert!(check_escaped(&s, false).is_ok(), "{max}: {s}");
        }
        assert_eq!(escape_capped("a<b", 3), "a…");
        assert_eq!(escape_capped("a<b", 6), "a&lt;b");
    }

    #[test]
    fn more_than_10_fields_are_split_into_sections() {
        let mut n = notification();
        n.fields = (0..25).map(|i| (format!("f{i}"), i.to_string())).collect();
        let body = render(&n);
        check_contract(&body).unwrap();
        let sizes: Vec<usize> = body["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b.get("fields"))
            .map(|f| f.as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, [10, 10, 5]);
        let texts = field_texts(&body);
        assert_eq!(texts[0], "*f0*\n0");
        assert_eq!(texts[24], "*f24*\n24");
    }

    #[test]
    fn too_many_fields_stay_within_50_blocks_and_say_so() {
        let mut n = notification();
        n.fields = (0..1000)
            .map(|i| (format!("f{i}"), i.to_string()))
            .collect();
        let body = render(&n);
        check_contract(&body).unwrap();
        assert_eq!(body["blocks"].as_array().unwrap().len(), MAX_BLOCKS);
        let texts = field_texts(&body);
        // Header, summary and context leave 47 sections of 10.
        assert_eq!(texts.len(), 470);
        assert_eq!(texts[469], "*…*\n531 more fields not shown");
    }

    #[test]
    fn minimal_notification_is_valid() {
        let n = Notification {
            kind: Kind::Test,
            severity: Severity::Info,
            pool: None,
            title: String::new(),
            summary: String::new(),
            fields: vec![
                (String::new(), String::new()),
                ("only label".into(), " ".into()),
            ],
            first_seen: String::new(),
            resolved: false,
            runbook_url: None,
            status_url: None,
        };
        let body = render(&n);
        check_contract(&body).unwrap();
        assert_eq!(body["text"], "🔵 ");
        assert_eq!(field_texts(&body), ["*only label*"]);
    }

    #[test]
    fn hostile_runbook_url_cannot_break_out_of_the_link() {
        let mut n = notification();
        n.runbook_url = Some("https://x.test/a?b=1&c=<2>|<!channel>".into());
        let body = render(&n);
        check_contract(&body).unwrap();
        let last = body["blocks"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(
            last["elements"][2]["text"],
            "<https://x.test/a?b=1&amp;c=%3C2%3E%7C%3C!channel%3E|Runbook>"
        );
        n.runbook_url = Some("javascript:alert(1)<x>".into());
        let body = render(&n);
        check_contract(&body).unwrap();
        let last = body["blocks"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(
            last["elements"][2]["text"],
            "Runbook: javascript:alert(1)&lt;x&gt;"
        );
    }

    #[test]
    fn control_and_bidi_characters_are_dropped() {
        let mut n = notification();
        n.title = "a\nb\u{202E}c\u{0}".into();
        n.fields = vec![("k".into(), "line1\nline2\u{7}".into())];
        let body = render(&n);
        check_contract(&body).unwrap();
        assert_eq!(body["blocks"][0]["text"]["text"], "🔴 a bc");
        assert_eq!(field_texts(&body), ["*k*\nline1\nline2"]);
    }

    fn valid() -> Value {
        render(&notification())
    }

    fn rejects(body: Value, needle: &str) {
        match check_contract(&body) {
            Ok(()) => panic!("accepted {body}"),
            Err(e) => assert!(e.contains(needle), "{e:?} should mention {needle:?}"),
        }
    }

    #[test]
    fn contract_rejects_raw_markup_in_untrusted_places() {
        let mut b = valid();
        b["blocks"][1]["text"]["text"] = json!("hi <!channel>");
        rejects(b, "blocks[1].text.text: unescaped '<'");
        let mut b = valid();
        b["blocks"][2]["fields"][1]["text"] = json!("<http://evil|click>");
        rejects(b, "unescaped '<'");
        let mut b = valid();
        b["text"] = json!("a & b");
        rejects(b, "text: unescaped '&'");
        let mut b = valid();
        b["blocks"][0]["text"]["text"] = json!("a > b");
        rejects(b, "unescaped '>'");
        // Links are only for context, and only http(s).
        let mut b = valid();
        b["blocks"][3]["elements"][0]["text"] = json!("<!channel>");
        rejects(b, "not an http(s) link");
        let mut b = valid();
        b["blocks"][3]["elements"][0]["text"] = json!("<https://a.test|x <b>");
        rejects(b, "link label");
        let mut b = valid();
        b["blocks"][3]["elements"][0]["text"] = json!("<https://a.test?a=1&b=2|x>");
        rejects(b, "link target: unescaped '&'");
    }

    #[test]
    fn contract_rejects_structure_and_limits() {
        rejects(json!([]), "not a JSON object");
        let mut b = valid();
        b.as_object_mut().unwrap().remove("text");
        rejects(b, "missing \"text\"");
        let mut b = valid();
        b["text"] = json!("  ");
        rejects(b, "text: empty");
        let mut b = valid();
        b["channel"] = json!("#general");
        rejects(b, "unknown top-level key");
        let mut b = valid();
        b["blocks"][0]["text"]["text"] = json!("h".repeat(151));
        rejects(b, "151 characters, at most 150");
        let mut b = valid();
        b["blocks"][0]["text"]["type"] = json!("mrkdwn");
        rejects(b, "not allowed here");
        let mut b = valid();
        b["blocks"][1]["type"] = json!("video");
        rejects(b, "unknown block type");
        let mut b = valid();
        b["blocks"][1]["feilds"] = json!([]);
        rejects(b, "unexpected key \"feilds\"");
        let mut b = valid();
        b["blocks"][2]["fields"] = json!(vec![json!({"type": "mrkdwn", "text": "x"}); 11]);
        rejects(b, "11 fields");
        let mut b = valid();
        b["blocks"][2]["fields"][0]["text"] = json!("x".repeat(2001));
        rejects(b, "2001 characters");
        let mut b = valid();
        b["blocks"] = json!(vec![json!({"type": "divider"}); 51]);
        rejects(b, "51 blocks");
        let mut b = valid();
        b["blocks"] = json!([]);
        rejects(b, "blocks: empty");
        let mut b = valid();
        b["blocks"][1]["text"]["text"] = json!("");
        rejects(b, "empty");
    }

    #[test]
    fn contract_accepts_other_known_blocks() {
        let mut b = valid();
        let blocks = b["blocks"].as_array_mut().unwrap();
        blocks.push(json!({"type": "divider", "block_id": "d1"}));
        blocks.push(json!({"type": "actions", "elements": [{"type": "button"}]}));
        blocks.push(json!({"type": "context", "elements": [
            {"type": "image", "image_url": "https://a.test/i.png", "alt_text": "i"},
            {"type": "plain_text", "text": "x &amp; y", "emoji": true},
        ]}));
        check_contract(&b).unwrap();
    }
}
