//! docs/api.md, rendered from the OpenAPI document the daemon serves, so the reference an
//! admin reads cannot drift from the API: a unit test compares the two and
//! `ESOS_BLESS_DOCS=1 cargo test -p esos api::markdown` rewrites the file.

use std::fmt::Write as _;

use serde_json::Value;

/// Markdown for an OpenAPI 3.1 document: operations grouped by tag, then every schema.
pub fn render(doc: &Value) -> String {
    let mut out = String::new();
    let info = &doc["info"];
    let _ = writeln!(
        out,
        "# {} {}\n",
        text(&info["title"]),
        text(&info["version"])
    );
    let _ = writeln!(
        out,
        "<!-- Generated from the OpenAPI document (GET /api/v1/openapi.json) by \
         crates/esos/src/api/markdown.rs; do not edit: run \
         `ESOS_BLESS_DOCS=1 cargo test -p esos api::markdown`. -->\n"
    );
    if let Some(d) = info["description"].as_str() {
        let _ = writeln!(out, "{d}\n");
    }
    let _ = writeln!(
        out,
        "How to reach the API (unix socket, TCP with TLS and tokens), the CLI and the TUI: \
         [management.md](management.md).\n"
    );
    if let Some(schemes) = doc["components"]["securitySchemes"].as_object() {
        let _ = writeln!(out, "## Authentication\n");
        for (name, s) in schemes {
            let _ = writeln!(
                out,
                "- `{name}`: {} {}{}",
                text(&s["type"]),
                text(&s["scheme"]),
                s["description"]
                    .as_str()
                    .map(|d| format!(". {d}"))
                    .unwrap_or_default()
            );
        }
        out.push('\n');
    }

    // Operations by tag, in the order tags first appear; paths keep the document's order.
    let mut tags: Vec<String> = Vec::new();
    let mut ops: Vec<(String, &str, &str, &Value)> = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (method, op) in item {
                let tag = op["tags"][0].as_str().unwrap_or("other").to_owned();
                if !tags.contains(&tag) {
                    tags.push(tag.clone());
                }
                ops.push((tag, method.as_str(), path.as_str(), op));
            }
        }
    }
    let _ = writeln!(out, "## Operations\n");
    for tag in &tags {
        let _ = writeln!(out, "### {tag}\n");
        for (_, method, path, op) in ops.iter().filter(|(t, ..)| t == tag) {
            operation(&mut out, method, path, op);
        }
    }

    let _ = writeln!(out, "## Schemas\n");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, s) in schemas {
            schema(&mut out, name, s);
        }
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

fn operation(out: &mut String, method: &str, path: &str, op: &Value) {
    let _ = writeln!(out, "#### `{} {path}`\n", method.to_uppercase());
    for key in ["summary", "description"] {
        if let Some(t) = op[key].as_str().filter(|t| !t.is_empty()) {
            let _ = writeln!(out, "{t}\n");
        }
    }
    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        let _ = writeln!(out, "| parameter | in | type | required | meaning |");
        let _ = writeln!(out, "| --- | --- | --- | --- | --- |");
        for p in params {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                text(&p["name"]),
                text(&p["in"]),
                type_of(&p["schema"]),
                yes_no(p["required"].as_bool() == Some(true)),
                cell(&p["description"])
            );
        }
        out.push('\n');
    }
    if let Some(body) = op.get("requestBody") {
        let mut line = content(body);
        if let Some(d) = body["description"].as_str().filter(|d| !d.is_empty()) {
            let _ = write!(line, " ({})", one_line(d));
        }
        let _ = writeln!(out, "Request body: {line}\n");
    }
    if let Some(responses) = op["responses"].as_object() {
        let _ = writeln!(out, "| answer | meaning | body |");
        let _ = writeln!(out, "| --- | --- | --- |");
        for (code, r) in responses {
            let meaning = match r["description"].as_str().filter(|d| !d.is_empty()) {
                Some(d) => one_line(d),
                None => reason(code).to_owned(),
            };
            let body = if r.get("content").is_some() {
                content(r)
            } else {
                "-".to_owned()
            };
            let _ = writeln!(out, "| {code} | {meaning} | {body} |");
        }
        out.push('\n');
    }
}

fn schema(out: &mut String, name: &str, s: &Value) {
    let _ = writeln!(out, "### {name}\n");
    if let Some(d) = s["description"].as_str().filter(|d| !d.is_empty()) {
        let _ = writeln!(out, "{d}\n");
    }
    let Some(props) = s["properties"].as_object() else {
        let _ = writeln!(out, "Type: {}\n", type_of(s));
        return;
    };
    let required: Vec<&str> = s["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let _ = writeln!(out, "| field | type | required | meaning |");
    let _ = writeln!(out, "| --- | --- | --- | --- |");
    for (field, p) in props {
        let _ = writeln!(
            out,
            "| `{field}` | {} | {} | {} |",
            type_of(p),
            yes_no(required.contains(&field.as_str())),
            cell(&p["description"])
        );
    }
    out.push('\n');
}

/// "`application/json` [DeviceInfo](#deviceinfo)" for each media type of a body.
fn content(body: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(c) = body["content"].as_object() {
        for (media, m) in c {
            parts.push(format!("`{media}` {}", type_of(&m["schema"])));
        }
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

/// A schema as a short phrase: a link for a reference, the element type for an array,
/// the alternatives for a union, the bounds and format for a number.
fn type_of(s: &Value) -> String {
    if let Some(r) = s["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("[{name}](#{})", name.to_lowercase());
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(alts) = s[key].as_array() {
            let parts: Vec<String> = alts.iter().map(type_of).collect();
            return parts.join(" or ");
        }
    }
    if let Some(values) = s["enum"].as_array() {
        let parts: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
        return format!("one of {}", parts.join(", "));
    }
    let base = match &s["type"] {
        Value::String(t) => single(t, s),
        Value::Array(ts) => {
            let parts: Vec<String> = ts
                .iter()
                .filter_map(Value::as_str)
                .map(|t| single(t, s))
                .collect();
            parts.join(" or ")
        }
        _ => "any".to_owned(),
    };
    let mut extra = Vec::new();
    if let Some(f) = s["format"].as_str() {
        extra.push(f.to_owned());
    }
    if let Some(m) = s["minimum"].as_f64() {
        extra.push(format!("≥ {m}"));
    }
    if let Some(m) = s["maximum"].as_f64() {
        extra.push(format!("≤ {m}"));
    }
    if extra.is_empty() {
        base
    } else {
        format!("{base} ({})", extra.join(", "))
    }
}

fn single(t: &str, s: &Value) -> String {
    match t {
        "array" => format!("array of {}", type_of(&s["items"])),
        "object" => match s.get("additionalProperties") {
            Some(v) if v.is_object() => format!("map of {}", type_of(v)),
            _ => "object".to_owned(),
        },
        other => other.to_owned(),
    }
}

fn reason(code: &str) -> &'static str {
    match code {
        "200" => "OK",
        "201" => "Created",
        "204" => "No Content",
        "400" => "Bad Request: the message names the field",
        "401" => "Unauthorized: no or unknown token (TCP only)",
        "403" => "Forbidden: a read-only token (TCP only)",
        "404" => "Not Found",
        "409" => "Conflict: in use, or would disturb sessions without `force`",
        "413" => "Payload Too Large",
        "500" => "Internal Server Error",
        _ => "",
    }
}

fn text(v: &Value) -> String {
    v.as_str().map(str::to_owned).unwrap_or_default()
}

fn one_line(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn cell(v: &Value) -> String {
    v.as_str().map(one_line).unwrap_or_default()
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md")
    }

    #[test]
    fn docs_api_md_is_the_rendered_openapi_document() {
        let doc: Value = serde_json::from_str(&super::super::openapi_json()).unwrap();
        let rendered = render(&doc) + "\n";
        let path = doc_path();
        if std::env::var_os("ESOS_BLESS_DOCS").is_some() {
            std::fs::write(&path, &rendered).unwrap();
            return;
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == rendered,
            "docs/api.md is not the rendered OpenAPI document; run \
             `ESOS_BLESS_DOCS=1 cargo test -p esos api::markdown` and commit it"
        );
    }

    #[test]
    fn every_operation_and_schema_is_rendered() {
        let doc: Value = serde_json::from_str(&super::super::openapi_json()).unwrap();
        let md = render(&doc);
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                let heading = format!("#### `{} {path}`", method.to_uppercase());
                assert!(md.contains(&heading), "missing {heading}");
            }
        }
        for name in doc["components"]["schemas"].as_object().unwrap().keys() {
            assert!(
                md.contains(&format!("### {name}\n")),
                "missing schema {name}"
            );
        }
    }

    #[test]
    fn types_read_as_phrases() {
        let v: Value =
            serde_json::json!({"type": ["integer", "null"], "format": "int64", "minimum": 0});
        assert_eq!(type_of(&v), "integer or null (int64, ≥ 0)");
        let v: Value =
            serde_json::json!({"type": "array", "items": {"$ref": "#/components/schemas/LunInfo"}});
        assert_eq!(type_of(&v), "array of [LunInfo](#luninfo)");
        let v: Value =
            serde_json::json!({"type": "object", "additionalProperties": {"type": "string"}});
        assert_eq!(type_of(&v), "map of string");
        assert_eq!(one_line("a |\n b"), "a \\| b");
    }
}
