//! A ladder view of an exchange: one self-contained HTML page (no network access) drawing
//! the frames of a connection as a sequence diagram.
//!
//! The page is built from JSON lines of the trace format ([`super::json`]): each header or
//! frame line becomes one arrow between the two containers' columns, in order, left to
//! right for `out`, `c2s` (and lines without a direction), right to left for `in` and
//! `s2c`. Arrows are coloured by channel (sessions) and labelled with the performative,
//! channel, handle (links) and a few fields; a click opens the fields and raw bytes;
//! errors and refusals are red; a search box filters by any text of a frame. Several
//! connections get a heading each.

use serde_json::Value as Json;

/// The page for `lines` (trace-format JSON objects), titled `title`.
pub fn ladder_html(title: &str, lines: &[Json]) -> String {
    let items: Vec<String> = lines.iter().filter_map(ladder_item).collect();
    ladder_page(title, &items)
}

/// One line as the page holds it, if the page shows it (headers, frames, errors, bytes
/// after a framing error, and events): its JSON with every `<` escaped, so that nothing
/// in it can end the script element the page keeps its data in, or open another.
pub fn ladder_item(line: &Json) -> Option<String> {
    let kind = line.get("kind").and_then(Json::as_str);
    if !matches!(kind, Some("header" | "frame" | "error" | "undecoded" | "event")) {
        return None;
    }
    Some(serde_json::to_string(line).ok()?.replace('<', "\\u003c"))
}

/// The page for `items` ([`ladder_item`]s), titled `title`: a page can be written again
/// as lines come without serialising the earlier ones again.
pub fn ladder_page<S: AsRef<str>>(title: &str, items: &[S]) -> String {
    let mut json =
        String::with_capacity(items.iter().map(|i| i.as_ref().len() + 1).sum::<usize>() + 2);
    json.push('[');
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            json.push(',');
        }
        json.push_str(item.as_ref());
    }
    json.push(']');
    let title = escape(title);
    format!("{HEAD}<title>{title}</title>{STYLE}</head><body><h1>{title}</h1>{BODY}<script type=\"application/json\" id=\"data\">{json}</script>{SCRIPT}</body></html>\n")
}

/// HTML text escaping.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const HEAD: &str = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">";

const STYLE: &str = r#"<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1em 2em; color: #222; }
h1 { font-size: 1.2em; }
#bar { position: sticky; top: 0; background: #fff; padding: .5em 0; border-bottom: 1px solid #ddd; }
#search { width: 30em; padding: .3em; }
.cols { display: grid; grid-template-columns: 10em 1fr 10em; font-weight: bold; margin-top: .5em; }
.cols div:nth-child(2) { text-align: center; font-weight: normal; color: #666; }
.cols div:last-child { text-align: right; }
.conn { margin: 1em 0 .3em; font-weight: bold; border-top: 2px solid #888; padding-top: .3em; }
.row { display: grid; grid-template-columns: 5em 1fr 5em; align-items: center; margin: 2px 0; }
.time { color: #888; font-size: .85em; }
.arrow, .hdr { position: relative; padding: 2px 12px; border-bottom: 2px solid var(--c, #456); cursor: pointer; }
.arrow.ltr::after, .hdr.ltr::after { content: ""; position: absolute; right: -2px; bottom: -7px; border: 6px solid transparent; border-left: 10px solid var(--c, #456); }
.arrow.rtl, .hdr.rtl { text-align: right; }
.arrow.rtl::before, .hdr.rtl::before { content: ""; position: absolute; left: -10px; bottom: -7px; border: 6px solid transparent; border-right: 10px solid var(--c, #456); }
.arrow.bad { --c: #c00; color: #c00; font-weight: bold; }
.note { color: #666; font-style: italic; text-align: center; }
.err { color: #c00; text-align: center; }
details { grid-column: 1 / 4; margin: 0 5em; }
pre { background: #f6f6f6; padding: .5em; overflow-x: auto; font-size: 12px; }
.hidden { display: none; }
.hdr { color: #555; --c: #999; }
</style>"#;

const BODY: &str = r#"<div id="bar"><input id="search" type="search" placeholder="search frames (performative, field, value, hex)"> <span id="count"></span>
<div class="cols"><div>this side</div><div>time · frame</div><div>peer</div></div></div><div id="ladder"></div>"#;

const SCRIPT: &str = r#"<script>
(function () {
  window.ladderErrors = 0;
  window.addEventListener('error', function () { window.ladderErrors++; document.body.dataset.errors = window.ladderErrors; });
  document.body.dataset.errors = 0;
  var lines = JSON.parse(document.getElementById('data').textContent);
  var ladder = document.getElementById('ladder');
  var palette = ['#2a6f97', '#6a994e', '#bc6c25', '#7b2cbf', '#c9184a', '#0f766e', '#a16207', '#4338ca'];
  var lastConn = null;
  var conns = {};
  lines.forEach(function (l) { if (l.connection !== undefined) conns[l.connection] = true; });
  var many = Object.keys(conns).length > 1;
  function el(tag, cls, text) { var e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; }
  function summary(l) {
    if (l.kind === 'header') return 'protocol header ' + (l.protocol || '') + ' ' + (l.version || '');
    var p = l.performative || 'undecodable';
    var f = l.fields || {};
    var parts = [p, 'ch ' + l.channel];
    if (f.handle !== undefined) parts.push('handle ' + JSON.stringify(f.handle));
    ['name', 'role', 'delivery-id', 'first', 'last', 'link-credit', 'settled', 'closed', 'container-id', 'mechanism', 'code'].forEach(function (k) {
      if (f[k] !== undefined && f[k] !== null) parts.push(k + ' ' + JSON.stringify(f[k]));
    });
    if (f.error) parts.push('ERROR ' + JSON.stringify(f.error));
    if (f.state) parts.push(JSON.stringify(f.state));
    if (l.message) parts.push('message ' + l.message.size + ' B');
    return parts.join(' · ');
  }
  function bad(l) {
    var f = l.fields || {};
    if (l.performative === null && l.kind === 'frame') return true;
    if (f.error) return true;
    if (f.state && (f.state.rejected || f.state.modified)) return true;
    if (l.performative === 'sasl-outcome' && f.code !== undefined && f.code !== 0) return true;
    return false;
  }
  var arrows = 0;
  lines.forEach(function (l) {
    if (many && l.connection !== lastConn) { ladder.appendChild(el('div', 'conn', 'connection ' + l.connection)); lastConn = l.connection; }
    if (l.kind === 'error') { var e = el('div', 'err', '! ' + l.error + ' (offset ' + l.offset + ')'); ladder.appendChild(e); return; }
    if (l.kind === 'event') { ladder.appendChild(el('div', 'note', l.event)); return; }
    if (l.kind === 'undecoded') { ladder.appendChild(el('div', 'err', '… ' + l.bytes + ' more bytes ' + (l.direction ? l.direction + ' ' : '') + 'after the framing error (offset ' + l.offset + ')')); return; }
    var rtl = l.direction === 'in' || l.direction === 's2c';
    var row = el('div', 'row');
    row.dataset.text = JSON.stringify(l).toLowerCase();
    var t = l.time !== undefined ? l.time.toFixed(6) + ' s' : '@' + l.offset;
    var header = l.kind === 'header';
    var a = el('div', (header ? 'hdr ' : 'arrow ') + (rtl ? 'rtl' : 'ltr') + (bad(l) ? ' bad' : ''), summary(l));
    if (!header) { a.style.setProperty('--c', palette[(l.channel || 0) % palette.length]); arrows++; }
    a.title = 'offset ' + l.offset;
    var d = el('details', 'hidden');
    d.appendChild(el('summary', null, 'fields and raw bytes'));
    var shown = {};
    Object.keys(l).forEach(function (k) { if (k !== 'raw' && k !== 'typed') shown[k] = l[k]; });
    d.appendChild(el('pre', null, JSON.stringify(shown, null, 2)));
    d.appendChild(el('pre', null, (l.raw || '').replace(/(..)/g, '$1 ').trim()));
    a.addEventListener('click', function () { d.classList.toggle('hidden'); d.open = !d.classList.contains('hidden'); });
    row.appendChild(el('div', 'time', rtl ? '' : t));
    row.appendChild(a);
    row.appendChild(el('div', 'time', rtl ? t : ''));
    ladder.appendChild(row);
    row.appendChild(d);
  });
  var count = document.getElementById('count');
  function filter() {
    var q = document.getElementById('search').value.toLowerCase();
    var shown = 0;
    Array.prototype.forEach.call(ladder.querySelectorAll('.row'), function (r) {
      var hit = !q || r.dataset.text.indexOf(q) >= 0;
      r.style.display = hit ? '' : 'none';
      if (hit && r.querySelector('.arrow')) shown++;
    });
    count.textContent = shown + ' of ' + arrows + ' frames';
  }
  document.getElementById('search').addEventListener('input', filter);
  filter();
  document.body.dataset.arrows = arrows;
})();
</script>"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_carries_every_line_and_cannot_be_broken_out_of() {
        let lines: Vec<Json> = vec![
            serde_json::json!({"kind": "header", "offset": 0, "protocol_id": 0, "raw": "414d515000010000"}),
            serde_json::json!({"kind": "frame", "offset": 8, "channel": 0, "performative": "open",
                "fields": {"container-id": "</script><script>alert(1)</script>"}, "raw": "00"}),
        ];
        let page = ladder_html("a <b> test", &lines);
        assert!(page.contains("<title>a &lt;b&gt; test</title>"));
        assert!(!page.contains("</script><script>alert(1)"), "the data cannot close its element");
        assert_eq!(page.matches("<script").count(), 2, "the data and the code, nothing else");
        assert!(!page.contains("http://") && !page.contains("https://"), "no network access");
    }
}
