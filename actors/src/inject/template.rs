//! Template expansion for injection: every template field of a request is compiled once
//! (a syntax error refuses the whole request, naming the field) and rendered once per recipient.
//!
//! One request must not be able to hang the node: each render runs on a fuel budget (minijinja
//! counts instructions and stops a render that spends it), macros and includes are not compiled
//! in, and a rendered part larger than the request's size limit fails that recipient.

use std::borrow::Cow;

use minijinja::{Environment, Template, UndefinedBehavior};
use serde_json::{Map, Value};

use super::request::{BadRequest, Content, InjectV1Request, Recipient, TemplateDialect};

/// Instructions one render may execute: generous for mail-merge templates (a loop over a few
/// thousand items), small enough that a runaway template stops within milliseconds.
pub const FUEL: u64 = 2_000_000;

/// The engine every request's templates compile in.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(FUEL));
    // A raw message keeps its final line break; a body template keeps what it was given.
    env.set_keep_trailing_newline(true);
    // A missing variable renders empty, as KumoMTA's templates do.
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env
}

/// Which part of the content a template makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    Raw,
    Subject,
    Text,
    Html,
    AmpHtml,
    Header(&'a str),
}

impl Field<'_> {
    pub fn name(&self) -> String {
        match self {
            Field::Raw => "content".into(),
            Field::Subject => "content.subject".into(),
            Field::Text => "content.text_body".into(),
            Field::Html => "content.html_body".into(),
            Field::AmpHtml => "content.amp_html_body".into(),
            Field::Header(h) => format!("content.headers[{h:?}]"),
        }
    }

    /// The template name; `.html` turns on HTML auto-escaping of substituted values.
    fn template_name(&self) -> &'static str {
        match self {
            Field::Html | Field::AmpHtml => "body.html",
            _ => "part.txt",
        }
    }
}

enum Compiled<'env, 'src> {
    Jinja(Template<'env, 'src>),
    Static(&'src str),
}

/// A request's templates, compiled.
pub struct Templates<'env, 'src> {
    parts: Vec<(Field<'src>, Compiled<'env, 'src>)>,
    /// A rendered part longer than this fails its recipient.
    max_len: usize,
}

/// The values a recipient's templates see, rendered part by part.
pub struct Rendered<'src> {
    parts: Vec<(Field<'src>, String)>,
}

impl<'src> Rendered<'src> {
    pub fn get(&self, field: Field<'_>) -> Option<&str> {
        self.parts.iter().find(|(f, _)| *f == field).map(|(_, s)| s.as_str())
    }

    pub fn headers(&self) -> impl Iterator<Item = (&'src str, &str)> {
        self.parts.iter().filter_map(|(f, s)| match f {
            Field::Header(h) => Some((*h, s.as_str())),
            _ => None,
        })
    }
}

impl<'env, 'src> Templates<'env, 'src> {
    /// Compile every template field of `request`. The error names the field and the line.
    pub fn compile(
        env: &'env Environment<'static>,
        request: &'src InjectV1Request,
        max_len: usize,
    ) -> Result<Self, BadRequest> {
        let mut sources: Vec<(Field<'src>, &'src str)> = Vec::new();
        match &request.content {
            Content::Raw(text) => sources.push((Field::Raw, text)),
            Content::Builder(b) => {
                let optional = [
                    (Field::Subject, &b.subject),
                    (Field::Text, &b.text_body),
                    (Field::Html, &b.html_body),
                    (Field::AmpHtml, &b.amp_html_body),
                ];
                sources.extend(optional.into_iter().filter_map(|(f, s)| s.as_deref().map(|s| (f, s))));
                sources.extend(b.headers.iter().map(|(name, value)| (Field::Header(name), value.as_str())));
            }
        }
        let parts = sources
            .into_iter()
            .map(|(field, source)| {
                let compiled = match request.template_dialect {
                    TemplateDialect::Static => Compiled::Static(source),
                    TemplateDialect::Jinja => {
                        Compiled::Jinja(env.template_from_named_str(field.template_name(), source).map_err(
                            |e| BadRequest(format!("{}: template error: {}", field.name(), describe(&e))),
                        )?)
                    }
                };
                Ok((field, compiled))
            })
            .collect::<Result<_, BadRequest>>()?;
        Ok(Templates { parts, max_len })
    }

    /// Render every part for one recipient. The error says which field failed and why.
    pub fn render(&self, ctx: &minijinja::Value) -> Result<Rendered<'src>, String> {
        let parts = self
            .parts
            .iter()
            .map(|(field, compiled)| {
                let text = match compiled {
                    Compiled::Static(s) => Cow::Borrowed(*s),
                    Compiled::Jinja(t) => {
                        Cow::Owned(t.render(ctx).map_err(|e| format!("{}: {}", field.name(), describe(&e)))?)
                    }
                };
                if text.len() > self.max_len {
                    return Err(format!("{}: renders to more than {} bytes", field.name(), self.max_len));
                }
                Ok((*field, text.into_owned()))
            })
            .collect::<Result<_, String>>()?;
        Ok(Rendered { parts })
    }
}

/// What a recipient's templates see (KumoMTA's order): the request's substitutions, then `email`
/// and `name`, then the recipient's own substitutions, which win.
pub fn context(globals: &Map<String, Value>, recipient: &Recipient) -> minijinja::Value {
    let mut vars = globals.clone();
    vars.insert("email".into(), Value::String(recipient.email.clone()));
    if let Some(name) = &recipient.name {
        vars.insert("name".into(), Value::String(name.clone()));
    }
    for (k, v) in &recipient.substitutions {
        vars.insert(k.clone(), v.clone());
    }
    minijinja::Value::from_serialize(&vars)
}

/// The error without the template's internal name, with its line when it has one.
fn describe(e: &minijinja::Error) -> String {
    let what = e.detail().map_or_else(|| e.kind().to_string(), |d| format!("{}: {d}", e.kind()));
    match e.line() {
        Some(line) => format!("{what} (line {line})"),
        None => what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::request::parse;

    fn req(content: &str, dialect: &str) -> InjectV1Request {
        parse(
            format!(
                r#"{{"envelope_sender":"s@example.com","recipients":[{{"email":"a@example.com","name":"Ann <&>","substitutions":{{"n":7}}}}],
                 "substitutions":{{"n":1,"g":"global"}},"template_dialect":"{dialect}","content":{content}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn render_one(r: &InjectV1Request) -> Result<Vec<(String, String)>, String> {
        let env = environment();
        let t = Templates::compile(&env, r, 1 << 20).map_err(|e| e.0)?;
        let out = t.render(&context(&r.substitutions, &r.recipients[0]))?;
        Ok(out.parts.iter().map(|(f, s)| (f.name(), s.clone())).collect())
    }

    #[test]
    fn recipient_values_override_globals_and_html_is_escaped() {
        let r = req(
            r#"{"subject":"Hi {{ name }} #{{ n }}","text_body":"{{ g }} {{ email }} {{ missing }}.","html_body":"<p>{{ name }}</p>","headers":{"X-N":"{{ n }}"}}"#,
            "Jinja",
        );
        let out = render_one(&r).unwrap();
        assert_eq!(
            out,
            [
                ("content.subject".into(), "Hi Ann <&> #7".into()),
                ("content.text_body".into(), "global a@example.com .".into()),
                ("content.html_body".into(), "<p>Ann &lt;&amp;&gt;</p>".into()),
                ("content.headers[\"X-N\"]".into(), "7".into()),
            ]
        );
    }

    #[test]
    fn raw_content_keeps_its_last_line_break_and_static_is_left_alone() {
        let r = req(r#""Subject: {{ n }}\n\nbody\n""#, "Jinja");
        assert_eq!(render_one(&r).unwrap()[0].1, "Subject: 7\n\nbody\n");
        let r = req(r#""Subject: {{ n }}\n\nbody\n""#, "Static");
        assert_eq!(render_one(&r).unwrap()[0].1, "Subject: {{ n }}\n\nbody\n");
    }

    #[test]
    fn a_syntax_error_names_the_field_and_line() {
        let r = req(r#"{"text_body":"ok","html_body":"line one\n{% if %}"}"#, "Jinja");
        let e = render_one(&r).unwrap_err();
        assert!(e.starts_with("content.html_body: template error") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn a_runaway_template_is_stopped_by_fuel() {
        let r = req(
            r#"{"text_body":"{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}"}"#,
            "Jinja",
        );
        let started = std::time::Instant::now();
        let e = render_one(&r).unwrap_err();
        assert!(e.contains("fuel"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn an_oversized_rendering_fails_the_recipient() {
        let r = req(r#"{"text_body":"{{ 'x' * 5000 }}"}"#, "Jinja");
        let env = environment();
        let t = Templates::compile(&env, &r, 1000).unwrap();
        let e = t.render(&context(&r.substitutions, &r.recipients[0])).err().unwrap();
        assert!(e.contains("content.text_body") && e.contains("1000 bytes"), "{e}");
    }
}
