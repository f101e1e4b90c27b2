//! The EventStorming board: a [`DomainModel`] drawn as stickies in the
//! usual colours (commands blue, events orange, aggregates yellow, policies
//! lilac, read models green) with the flow between them as arrows: command →
//! aggregate → event → policy → command, and event → read model.
//!
//! The layout is deterministic, a function of the model alone:
//!
//! - one swimlane per aggregate, in the model's order: its commands in a
//!   column, the aggregate as one tall sticky, its events in a column;
//! - right of the events, one column of policies and read models, each as
//!   near as it fits to the height of the events it consumes;
//! - a policy's arrows back to the commands it sends run around the board
//!   (right, over the top, down the left margin), one loop further out
//!   each, so they cross no sticky.
//!
//! Every sticky is an SVG group `<g class="command|event|aggregate|policy|
//! read-model" data-name="…">` (commands and events named `Aggregate.Name`,
//! as policies and read models name them, and carrying `data-aggregate`);
//! every arrow a `<path class="flow" data-from="…" data-to="…">`, each end
//! written `kind:name`. Names come from guests, so every text is escaped, and
//! the output needs nothing from outside: no fonts, scripts or images.

use crate::model::DomainModel;
use std::fmt::Write as _;

/// The kinds of sticky, with their class names and colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Command,
    Event,
    Aggregate,
    Policy,
    ReadModel,
}

impl Kind {
    /// Every kind, in the legend's order.
    pub const ALL: [Kind; 5] = [Kind::Command, Kind::Aggregate, Kind::Event, Kind::Policy, Kind::ReadModel];

    /// The class of the sticky's SVG group.
    pub fn class(self) -> &'static str {
        match self {
            Kind::Command => "command",
            Kind::Event => "event",
            Kind::Aggregate => "aggregate",
            Kind::Policy => "policy",
            Kind::ReadModel => "read-model",
        }
    }

    /// The sticky's fill, `#rrggbb`.
    pub fn fill(self) -> &'static str {
        match self {
            Kind::Command => "#8fc3f7",
            Kind::Event => "#ffa64d",
            Kind::Aggregate => "#fff35c",
            Kind::Policy => "#c9a3f0",
            Kind::ReadModel => "#8fd694",
        }
    }

    /// The caption written on the sticky.
    fn caption(self) -> &'static str {
        match self {
            Kind::Command => "command",
            Kind::Event => "event",
            Kind::Aggregate => "aggregate",
            Kind::Policy => "policy",
            Kind::ReadModel => "read model",
        }
    }
}

/// The header of the page [`html`] serves, so a browser runs nothing and
/// fetches nothing even if a name slipped past the escaping.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

// Geometry, in SVG user units (CSS pixels at 100 %).
const MARGIN: f64 = 20.0;
const TITLE: f64 = 34.0;
const STICKY_W: f64 = 160.0;
const STICKY_H: f64 = 60.0;
const ROW_GAP: f64 = 14.0;
const LANE_GAP: f64 = 36.0;
/// Between commands and aggregate, and aggregate and events.
const STRAIGHT: f64 = 70.0;
/// Between the events and the column of policies and read models.
const FAN: f64 = 170.0;
/// Between two loops of a policy's arrows.
const LOOP: f64 = 10.0;
/// The widest line of a name, in characters (14 px sans-serif in 160 px).
const LINE_CHARS: usize = 17;

/// The board as a standalone SVG document.
pub fn svg(model: &DomainModel) -> String {
    let board = Board::lay_out(model);
    let mut out = String::new();
    board.write_svg(&mut out);
    out
}

/// The board as an HTML page: titled with the domain's name, a legend of the
/// colours, and the SVG inline.
pub fn html(model: &DomainModel) -> String {
    let board = Board::lay_out(model);
    let name = escape(&model.name);
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CONTENT_SECURITY_POLICY}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{name} — EventStorming board</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n\
         <header><h1>{name}</h1><p>EventStorming board of domain <code>{name}</code> (aether-guest {sdk})</p>\n\
         <ul class=\"legend\">",
        sdk = escape(&model.sdk_version),
    );
    for kind in Kind::ALL {
        let _ = write!(
            out,
            "<li data-kind=\"{class}\"><span class=\"swatch\" style=\"background:{fill}\"></span>{caption}</li>",
            class = kind.class(),
            fill = kind.fill(),
            caption = kind.caption(),
        );
    }
    out.push_str("<li data-kind=\"flow\"><span class=\"arrow\">→</span>flow</li></ul></header>\n<main>\n");
    board.write_svg(&mut out);
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

const STYLE: &str = "body { margin: 0; padding: 16px 24px; background: #fafafa; color: #222; \
font-family: 'DejaVu Sans', 'Helvetica Neue', Arial, sans-serif; }\n\
h1 { margin: 0 0 4px; font-size: 22px; }\n\
header p { margin: 0 0 8px; color: #555; font-size: 13px; }\n\
.legend { display: flex; flex-wrap: wrap; gap: 18px; list-style: none; margin: 0 0 12px; padding: 0; font-size: 13px; }\n\
.legend li { display: flex; align-items: center; gap: 6px; }\n\
.swatch { display: inline-block; width: 14px; height: 14px; border: 1px solid #0003; }\n\
.arrow { font-size: 16px; color: #555; }\n\
main { overflow: auto; }\n";

/// A sticky placed on the board.
#[derive(Debug)]
struct Sticky {
    kind: Kind,
    /// What `data-name` says: `Aggregate.Name` for commands and events.
    key: String,
    /// What the sticky shows.
    label: String,
    aggregate: Option<String>,
    x: f64,
    y: f64,
    h: f64,
}

impl Sticky {
    fn mid_y(&self) -> f64 {
        self.y + self.h / 2.0
    }

    fn reference(&self) -> String {
        format!("{}:{}", self.kind.class(), self.key)
    }
}

/// An arrow from one sticky to another, along an SVG path.
#[derive(Debug)]
struct Flow {
    from: usize,
    to: usize,
    path: String,
}

#[derive(Debug)]
struct Board {
    title: String,
    width: f64,
    height: f64,
    stickies: Vec<Sticky>,
    flows: Vec<Flow>,
}

impl Board {
    fn lay_out(model: &DomainModel) -> Board {
        let sends = model.policies.iter().map(|p| p.sends.len()).sum::<usize>();
        let channel = LOOP * sends as f64 + 16.0;
        let x_command = MARGIN + channel;
        let x_aggregate = x_command + STICKY_W + STRAIGHT;
        let x_event = x_aggregate + STICKY_W + STRAIGHT;
        let x_reactor = x_event + STICKY_W + FAN;
        let top = MARGIN + TITLE + channel;

        let mut stickies = Vec::new();
        let mut flows = Vec::new();
        // Where each command and event sits, by `Aggregate.Name`.
        let mut commands = std::collections::HashMap::new();
        let mut events = std::collections::HashMap::new();
        let mut y = top;
        for aggregate in &model.aggregates {
            let rows = aggregate.commands.len().max(aggregate.events.len()).max(1);
            let lane = rows as f64 * (STICKY_H + ROW_GAP) - ROW_GAP;
            let agg = stickies.len();
            stickies.push(Sticky {
                kind: Kind::Aggregate,
                key: aggregate.name.clone(),
                label: aggregate.name.clone(),
                aggregate: None,
                x: x_aggregate,
                y,
                h: lane,
            });
            for (kind, list, x, index) in [
                (Kind::Command, &aggregate.commands, x_command, &mut commands),
                (Kind::Event, &aggregate.events, x_event, &mut events),
            ] {
                for (row, message) in list.iter().enumerate() {
                    let key = format!("{}.{}", aggregate.name, message.name);
                    let sy = y + row as f64 * (STICKY_H + ROW_GAP);
                    let mid = sy + STICKY_H / 2.0;
                    let i = stickies.len();
                    index.entry(key.clone()).or_insert(i);
                    stickies.push(Sticky {
                        kind,
                        key,
                        label: message.name.clone(),
                        aggregate: Some(aggregate.name.clone()),
                        x,
                        y: sy,
                        h: STICKY_H,
                    });
                    flows.push(match kind {
                        Kind::Command => {
                            Flow { from: i, to: agg, path: format!("M{},{mid} H{}", x + STICKY_W, x_aggregate - 1.0) }
                        }
                        _ => Flow { from: agg, to: i, path: format!("M{},{mid} H{}", x_aggregate + STICKY_W, x - 1.0) },
                    });
                }
            }
            y += lane + LANE_GAP;
        }
        let lanes_bottom = y - LANE_GAP;

        // Policies, then read models, each as near the events it consumes
        // as the ones above it let it be.
        let resolve = |names: &[String]| -> Vec<usize> {
            names
                .iter()
                .filter_map(|n| {
                    let found = events.get(n.as_str()).copied();
                    if found.is_none() {
                        tracing::debug!(event = %n, "the board leaves out an arrow from an event the model lacks");
                    }
                    found
                })
                .collect()
        };
        let mut reactors: Vec<(Kind, &str, Vec<usize>, f64)> = model
            .policies
            .iter()
            .map(|p| (Kind::Policy, p.name.as_str(), resolve(&p.reacts_to)))
            .chain(model.read_models.iter().map(|r| (Kind::ReadModel, r.name.as_str(), resolve(&r.consumes))))
            .map(|(kind, name, sources)| {
                let wanted = if sources.is_empty() {
                    top
                } else {
                    sources.iter().map(|&s| stickies[s].mid_y()).sum::<f64>() / sources.len() as f64 - STICKY_H / 2.0
                };
                (kind, name, sources, wanted.max(top))
            })
            .collect();
        // A stable sort: equal wishes keep the model's order.
        reactors.sort_by(|a, b| a.3.total_cmp(&b.3));
        let mut free = top;
        let mut policies = Vec::new();
        for (kind, name, sources, wanted) in reactors {
            let ry = wanted.max(free);
            free = ry + STICKY_H + ROW_GAP;
            let i = stickies.len();
            stickies.push(Sticky {
                kind,
                key: name.to_owned(),
                label: name.to_owned(),
                aggregate: None,
                x: x_reactor,
                y: ry,
                h: STICKY_H,
            });
            // Arrows arrive spread down the sticky's edge, in the order of
            // their events' heights, so they do not cross at the end.
            let mut sources = sources;
            sources.sort_by(|&a, &b| stickies[a].y.total_cmp(&stickies[b].y));
            for (slot, &s) in sources.iter().enumerate() {
                let (sx, sy) = (stickies[s].x + STICKY_W, stickies[s].mid_y());
                let ty = spread(ry, slot, sources.len());
                let bend = FAN / 2.0;
                flows.push(Flow {
                    from: s,
                    to: i,
                    path: format!("M{sx},{sy} C{},{sy} {},{ty} {},{ty}", sx + bend, x_reactor - bend, x_reactor - 1.0),
                });
            }
            if kind == Kind::Policy {
                policies.push((name, i));
            }
        }
        let reactors_bottom = free - ROW_GAP;

        // A policy's arrows to its commands: the k-th leaves right at k
        // loops out, runs over the top at k loops up and comes down the left
        // margin k loops out. Loops to lower commands go further out (and
        // leave their policy lower), so they do not cross in the margins.
        let mut loops = Vec::new();
        for policy in &model.policies {
            let Some(&(_, from)) = policies.iter().find(|(name, _)| *name == policy.name) else { continue };
            for command in &policy.sends {
                match commands.get(command.as_str()) {
                    Some(&to) => loops.push((from, to)),
                    None => tracing::debug!(
                        policy = %policy.name, command = %command,
                        "the board leaves out an arrow to a command the model lacks"
                    ),
                }
            }
        }
        loops.sort_by(|a, b| stickies[a.1].y.total_cmp(&stickies[b.1].y));
        for (k, &(from, to)) in loops.iter().enumerate() {
            let siblings: Vec<usize> = (0..loops.len()).filter(|&j| loops[j].0 == from).collect();
            let slot = siblings.iter().position(|&j| j == k).expect("a loop is its own sibling");
            let out = k as f64 * LOOP + 8.0;
            let (sx, sy) = (x_reactor + STICKY_W, spread(stickies[from].y, slot, siblings.len()));
            let cy = stickies[to].mid_y();
            flows.push(Flow {
                from,
                to,
                path: format!(
                    "M{sx},{sy} H{} V{} H{} V{cy} H{}",
                    sx + out,
                    top - out,
                    x_command - out,
                    x_command - 1.0
                ),
            });
        }
        Board {
            title: model.name.clone(),
            width: x_reactor + STICKY_W + channel + MARGIN,
            height: lanes_bottom.max(reactors_bottom) + MARGIN,
            stickies,
            flows,
        }
    }

    fn write_svg(&self, out: &mut String) {
        let (w, h) = (self.width, self.height);
        let _ = write!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"board\" width=\"{w}\" height=\"{h}\" \
             viewBox=\"0 0 {w} {h}\" font-family=\"'DejaVu Sans', 'Helvetica Neue', Arial, sans-serif\" \
             role=\"img\" aria-label=\"EventStorming board of {title}\">\n\
             <defs><marker id=\"flow-arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"6\" \
             markerHeight=\"6\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/></marker></defs>\n\
             <rect width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>\n\
             <text x=\"{MARGIN}\" y=\"{ty}\" font-size=\"18\" font-weight=\"bold\" fill=\"#222\">{title}</text>\n",
            title = escape(&self.title),
            ty = MARGIN + 18.0,
        );
        // Arrows first: stickies are drawn over their ends.
        for flow in &self.flows {
            let _ = writeln!(
                out,
                "<path class=\"flow\" data-from=\"{}\" data-to=\"{}\" d=\"{}\" fill=\"none\" stroke=\"#555\" \
                 stroke-width=\"1.5\" marker-end=\"url(#flow-arrow)\"/>",
                escape(&self.stickies[flow.from].reference()),
                escape(&self.stickies[flow.to].reference()),
                flow.path,
            );
        }
        for sticky in &self.stickies {
            write_sticky(out, sticky);
        }
        out.push_str("</svg>\n");
    }
}

/// The height of the `slot`-th of `of` arrow ends spread down the edge of a
/// sticky whose top is at `y`.
fn spread(y: f64, slot: usize, of: usize) -> f64 {
    let room = STICKY_H - 24.0;
    y + 12.0 + room * (slot as f64 + 0.5) / of as f64
}

fn write_sticky(out: &mut String, sticky: &Sticky) {
    let kind = sticky.kind;
    let aggregate = match &sticky.aggregate {
        Some(a) => format!(" data-aggregate=\"{}\"", escape(a)),
        None => String::new(),
    };
    let (w, h) = (STICKY_W, sticky.h);
    let _ = write!(
        out,
        "<g class=\"{class}\" data-name=\"{key}\"{aggregate} transform=\"translate({x},{y})\">\
         <title>{caption} {key}</title>\
         <rect x=\"3\" y=\"3\" width=\"{w}\" height=\"{h}\" fill=\"#000\" fill-opacity=\"0.12\"/>\
         <rect width=\"{w}\" height=\"{h}\" fill=\"{fill}\" stroke=\"#00000033\"/>\
         <text x=\"8\" y=\"14\" font-size=\"10\" fill=\"#00000099\">{caption}</text>",
        class = kind.class(),
        key = escape(&sticky.key),
        x = sticky.x,
        y = sticky.y,
        fill = kind.fill(),
        caption = kind.caption(),
    );
    let max_lines = (((h - 22.0) / 17.0).floor() as usize).max(1);
    let lines = wrap(&sticky.label, LINE_CHARS, max_lines);
    let first = 22.0 + (h - 22.0) / 2.0 - (lines.len() as f64 - 1.0) * 17.0 / 2.0 + 5.0;
    let _ = write!(out, "<text x=\"{}\" font-size=\"14\" text-anchor=\"middle\" fill=\"#111\">", w / 2.0);
    for (n, line) in lines.iter().enumerate() {
        let _ = write!(out, "<tspan x=\"{}\" y=\"{}\">{}</tspan>", w / 2.0, first + n as f64 * 17.0, escape(line));
    }
    out.push_str("</text></g>\n");
}

/// `name` in lines of at most `width` characters, broken where a new word
/// starts (`TransferSaga` → `Transfer`, `Saga`; `_` and `-` end a word),
/// else anywhere; past `max_lines` the last line ends in `…`.
fn wrap(name: &str, width: usize, max_lines: usize) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut previous: Option<char> = None;
    for c in name.chars() {
        let starts_word = c.is_uppercase() && previous.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit());
        if starts_word && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        word.push(c);
        if c == '_' || c == '-' {
            words.push(std::mem::take(&mut word));
        }
        previous = Some(c);
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in words {
        let mut rest = word.as_str();
        while !rest.is_empty() {
            let room = width - line.chars().count();
            let len = rest.chars().count();
            if len <= room {
                line.push_str(rest);
                rest = "";
            } else if line.is_empty() {
                // A word longer than a line: cut it.
                let cut = rest.char_indices().nth(width).map_or(rest.len(), |(i, _)| i);
                line.push_str(&rest[..cut]);
                rest = &rest[cut..];
                lines.push(std::mem::take(&mut line));
            } else {
                lines.push(std::mem::take(&mut line));
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    if lines.len() > max_lines {
        lines.truncate(max_lines);
        let last = lines.last_mut().expect("max_lines >= 1");
        let keep: String = last.chars().take(width.saturating_sub(1)).collect();
        *last = keep + "…";
    }
    lines
}

/// `text` safe inside XML and HTML text and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Not allowed in XML 1.0 at all: shown as the replacement character.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AggregateModel, MessageModel, PolicyModel, ReadModelModel};
    use std::collections::BTreeMap;

    fn messages(names: &[&str]) -> Vec<MessageModel> {
        names.iter().map(|n| MessageModel { name: (*n).into(), schema: serde_json::json!({}) }).collect()
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    /// The bank's shape: two aggregates, a saga and a read model.
    fn bank() -> DomainModel {
        DomainModel {
            name: "bank".into(),
            sdk_version: "0.1.0".into(),
            aggregates: vec![
                AggregateModel {
                    name: "Account".into(),
                    commands: messages(&["Open", "Deposit", "Debit", "Credit", "Refund"]),
                    events: messages(&["Opened", "Deposited", "Debited", "Credited", "Refunded"]),
                    state_schema: serde_json::json!({}),
                },
                AggregateModel {
                    name: "Transfer".into(),
                    commands: messages(&["Start", "Complete", "Fail"]),
                    events: messages(&["Started", "Completed", "Failed"]),
                    state_schema: serde_json::json!({}),
                },
            ],
            policies: vec![PolicyModel {
                name: "TransferSaga".into(),
                reacts_to: strings(&["Transfer.Started", "Account.Debited", "Account.Credited"]),
                sends: strings(&[
                    "Account.Debit",
                    "Account.Credit",
                    "Account.Refund",
                    "Transfer.Complete",
                    "Transfer.Fail",
                ]),
            }],
            read_models: vec![ReadModelModel {
                name: "AccountsByOwner".into(),
                consumes: strings(&["Account.Opened", "Account.Deposited", "Account.Debited"]),
                row_schema: serde_json::json!({}),
                indexes: vec![],
            }],
        }
    }

    /// The value of `name="…"` in a tag.
    fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
        let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(&tag[start..start + tag[start..].find('"')?])
    }

    /// Every opening tag `<element …>` of the document.
    fn tags<'a>(doc: &'a str, element: &str) -> Vec<&'a str> {
        let open = format!("<{element} ");
        doc.match_indices(&open).map(|(i, _)| &doc[i..i + doc[i..].find('>').unwrap()]).collect()
    }

    /// How often each `(class, data-name)` is drawn.
    fn stickies(doc: &str) -> BTreeMap<(String, String), usize> {
        let mut drawn = BTreeMap::new();
        for tag in tags(doc, "g") {
            let (Some(class), Some(name)) = (attribute(tag, "class"), attribute(tag, "data-name")) else { continue };
            *drawn.entry((class.to_owned(), name.to_owned())).or_default() += 1;
        }
        drawn
    }

    fn flows(doc: &str) -> Vec<(String, String)> {
        tags(doc, "path")
            .into_iter()
            .filter(|tag| attribute(tag, "class") == Some("flow"))
            .map(|tag| (attribute(tag, "data-from").unwrap().to_owned(), attribute(tag, "data-to").unwrap().to_owned()))
            .collect()
    }

    #[test]
    fn every_element_of_the_model_is_drawn_once() {
        let model = bank();
        let doc = svg(&model);
        let mut expected = BTreeMap::new();
        for a in &model.aggregates {
            expected.insert(("aggregate".to_owned(), a.name.clone()), 1);
            for c in &a.commands {
                expected.insert(("command".to_owned(), format!("{}.{}", a.name, c.name)), 1);
            }
            for e in &a.events {
                expected.insert(("event".to_owned(), format!("{}.{}", a.name, e.name)), 1);
            }
        }
        for p in &model.policies {
            expected.insert(("policy".to_owned(), p.name.clone()), 1);
        }
        for r in &model.read_models {
            expected.insert(("read-model".to_owned(), r.name.clone()), 1);
        }
        assert_eq!(stickies(&doc), expected);
    }

    #[test]
    fn every_declared_flow_is_an_arrow() {
        let model = bank();
        let doc = svg(&model);
        let mut expected = Vec::new();
        for a in &model.aggregates {
            for c in &a.commands {
                expected.push((format!("command:{}.{}", a.name, c.name), format!("aggregate:{}", a.name)));
            }
            for e in &a.events {
                expected.push((format!("aggregate:{}", a.name), format!("event:{}.{}", a.name, e.name)));
            }
        }
        for p in &model.policies {
            expected.extend(p.reacts_to.iter().map(|e| (format!("event:{e}"), format!("policy:{}", p.name))));
            expected.extend(p.sends.iter().map(|c| (format!("policy:{}", p.name), format!("command:{c}"))));
        }
        for r in &model.read_models {
            expected.extend(r.consumes.iter().map(|e| (format!("event:{e}"), format!("read-model:{}", r.name))));
        }
        let mut drawn = flows(&doc);
        drawn.sort();
        expected.sort();
        assert_eq!(drawn, expected);
        assert_eq!(doc.matches("marker-end=\"url(#flow-arrow)\"").count(), expected.len());
    }

    #[test]
    fn stickies_do_not_overlap_and_stay_on_the_board() {
        let model = bank();
        let board = Board::lay_out(&model);
        for (i, a) in board.stickies.iter().enumerate() {
            assert!(a.x >= 0.0 && a.y >= 0.0, "{a:?}");
            assert!(a.x + STICKY_W <= board.width && a.y + a.h <= board.height, "{a:?} off the board");
            for b in &board.stickies[i + 1..] {
                let apart = a.x + STICKY_W <= b.x || b.x + STICKY_W <= a.x || a.y + a.h <= b.y || b.y + b.h <= a.y;
                assert!(apart, "{a:?} overlaps {b:?}");
            }
        }
    }

    #[test]
    fn the_layout_is_deterministic_and_puts_each_lane_in_order() {
        let model = bank();
        assert_eq!(svg(&model), svg(&model));
        let board = Board::lay_out(&model);
        let find = |key: &str| board.stickies.iter().find(|s| s.key == key).unwrap();
        let (open, account, opened) = (find("Account.Open"), find("Account"), find("Account.Opened"));
        assert!(open.x < account.x && account.x < opened.x);
        assert_eq!(open.mid_y(), opened.mid_y());
        assert!(find("Account.Refunded").y < find("Transfer").y, "lanes follow the model's order");
        for reactor in [find("TransferSaga"), find("AccountsByOwner")] {
            assert!(reactor.x > opened.x, "policies and read models sit right of the events");
        }
    }

    #[test]
    fn names_are_escaped_everywhere() {
        let mut model = bank();
        let evil = "<script>alert(\"x\")</script>&'";
        model.name = evil.into();
        model.aggregates[0].name = evil.into();
        model.aggregates[0].commands[0].name = "<b>\u{1}".into();
        model.policies[0].name = "\"><img src=x onerror=alert(1)>".into();
        model.read_models[0].name = "a'b".into();
        for doc in [svg(&model), html(&model)] {
            assert!(!doc.contains("<script"), "{doc}");
            assert!(!doc.contains("<img"), "{doc}");
            assert!(!doc.contains("<b>"), "{doc}");
            assert!(!doc.contains('\u{1}'), "{doc}");
            assert!(doc.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"), "{doc}");
            let drawn = stickies(&doc);
            assert!(
                drawn.contains_key(&("policy".to_owned(), "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;".to_owned()))
            );
            assert!(drawn.contains_key(&("read-model".to_owned(), "a&#39;b".to_owned())));
        }
    }

    #[test]
    fn the_page_is_titled_has_a_legend_and_fetches_nothing() {
        let page = html(&bank());
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<title>bank — EventStorming board</title>"));
        for kind in Kind::ALL {
            assert!(page.contains(&format!("<li data-kind=\"{}\">", kind.class())), "{kind:?}");
            assert!(page.contains(kind.fill()), "{kind:?}");
        }
        assert_eq!(page.matches("<svg ").count(), 1);
        for outside in ["http://", "https://", "<script", "<link", "@import", "url(http", "src="] {
            let outside_svg_namespace = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
            assert!(!outside_svg_namespace.contains(outside), "{outside}");
        }
    }

    #[test]
    fn references_to_unknown_messages_draw_no_arrow() {
        let mut model = bank();
        model.policies[0].reacts_to.push("Nope.Gone".into());
        model.policies[0].sends.push("Account.Missing".into());
        let drawn = flows(&svg(&model));
        assert!(drawn.iter().all(|(from, to)| !from.contains("Nope") && !to.contains("Missing")));
        assert_eq!(drawn.len(), flows(&svg(&bank())).len());
    }

    #[test]
    fn long_names_wrap_at_words_and_end_in_an_ellipsis() {
        assert_eq!(wrap("TransferSaga", 17, 2), ["TransferSaga"]);
        assert_eq!(wrap("AccountsByOwnerAndBalance", 17, 2), ["AccountsByOwner", "AndBalance"]);
        assert_eq!(wrap("reserve_stock-now", 8, 3), ["reserve_", "stock-", "now"]);
        assert_eq!(wrap("abcdefghijkl", 5, 2), ["abcde", "fghi…"]);
        assert_eq!(wrap("", 5, 2), [""]);
    }
}
