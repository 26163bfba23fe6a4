//! The search language, translated to an FTS5 expression plus SQL filters.
//!
//! ```text
//! words            all of them (AND is implied)
//! "a phrase"       the words in this order
//! encr*            prefix
//! a OR b, a AND b, a NOT b, -b, ( … )
//! from:x to:x subject:x   the word x (or "phrase", or prefix*) in that field
//! has:attachment   only messages with attachments
//! before:2024-05-01 after:2024-01-31   by Date (UTC days)
//! ```
//! Every word reaches FTS5 inside double quotes, so no user input is ever
//! read as FTS5 syntax.

use thiserror::Error;

use crate::fold::words;

/// Why a query could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QueryError {
    #[error("the query is empty")]
    Empty,
    #[error("unbalanced quote: close the phrase with \"")]
    OpenQuote,
    #[error("unbalanced parentheses")]
    Parentheses,
    #[error("{0} needs a word on both sides, e.g. `invoice {0} receipt`")]
    Operator(String),
    #[error("unknown field {0:?}; use from:, to:, subject:, has:attachment, before: or after:")]
    UnknownField(String),
    #[error("{0:?} is not a date; write YYYY-MM-DD")]
    Date(String),
    #[error("{0}: NOT needs something before it, e.g. `report NOT draft`")]
    LeadingNot(String),
    #[error("the search engine did not understand the query: {0}")]
    Syntax(String),
}

/// A parsed query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// The FTS5 MATCH expression, if the query has words.
    pub fts: Option<String>,
    pub has_attachment: bool,
    /// Unix seconds: Date < before.
    pub before: Option<i64>,
    /// Unix seconds: Date >= after.
    pub after: Option<i64>,
    /// The first word of every term, for snippets.
    pub(crate) needles: Vec<crate::snippet::Needle>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Operand(String),
    And,
    Or,
    Not,
    Open,
    Close,
}

impl Query {
    pub fn parse(input: &str) -> Result<Query, QueryError> {
        let mut query = Query::default();
        let mut tokens = Vec::new();
        let chars: Vec<char> = input.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c.is_whitespace() {
                i += 1;
                continue;
            }
            if c == '(' || c == ')' {
                tokens.push(if c == '(' { Token::Open } else { Token::Close });
                i += 1;
                continue;
            }
            // A word: up to whitespace or a parenthesis, with quoted runs kept whole.
            let start = i;
            let mut quoted = false;
            while i < chars.len()
                && (quoted || !(chars[i].is_whitespace() || chars[i] == '(' || chars[i] == ')'))
            {
                if chars[i] == '"' {
                    quoted = !quoted;
                }
                i += 1;
            }
            if quoted {
                return Err(QueryError::OpenQuote);
            }
            let word: String = chars[start..i].iter().collect();
            match word.as_str() {
                "AND" => tokens.push(Token::And),
                "OR" => tokens.push(Token::Or),
                "NOT" => tokens.push(Token::Not),
                _ => {
                    if let Some(rest) = word.strip_prefix('-').filter(|r| !r.is_empty()) {
                        tokens.push(Token::Not);
                        if let Some(op) = operand(rest, &mut query)? {
                            tokens.push(Token::Operand(op));
                        }
                    } else if let Some(op) = operand(&word, &mut query)? {
                        tokens.push(Token::Operand(op));
                    }
                }
            }
        }
        query.fts = join(&tokens)?;
        if query.fts.is_none()
            && !query.has_attachment
            && query.before.is_none()
            && query.after.is_none()
        {
            return Err(QueryError::Empty);
        }
        Ok(query)
    }
}

/// One search term as FTS5 text, or `None` for a filter handled in SQL.
fn operand(word: &str, query: &mut Query) -> Result<Option<String>, QueryError> {
    if let Some((field, value)) = word.split_once(':').filter(|(f, _)| !f.starts_with('"')) {
        let column = match field.to_ascii_lowercase().as_str() {
            "from" => "sender",
            "to" => "recipients",
            "subject" => "subject",
            "has" if value.eq_ignore_ascii_case("attachment") => {
                query.has_attachment = true;
                return Ok(None);
            }
            "before" => {
                query.before = Some(parse_date(value)?);
                return Ok(None);
            }
            "after" => {
                query.after = Some(parse_date(value)?);
                return Ok(None);
            }
            _ => return Err(QueryError::UnknownField(field.to_string())),
        };
        return Ok(term(value, query).map(|t| format!("{column} : {t}")));
    }
    Ok(term(word, query))
}

/// A word, phrase or prefix as a quoted FTS5 string.
fn term(word: &str, query: &mut Query) -> Option<String> {
    let (body, prefix) = match word.strip_suffix('*') {
        Some(b) => (b, true),
        None => (word, false),
    };
    let cleaned = words(body.trim_matches('"'));
    if cleaned.is_empty() {
        return None;
    }
    let first = cleaned.split(' ').next().unwrap_or_default();
    let is_phrase = cleaned.contains(' ');
    query
        .needles
        .push(crate::snippet::Needle::new(first, prefix && !is_phrase));
    Some(if prefix {
        format!("\"{cleaned}\" *")
    } else {
        format!("\"{cleaned}\"")
    })
}

/// Joins tokens into an FTS5 expression, making implied ANDs explicit.
fn join(tokens: &[Token]) -> Result<Option<String>, QueryError> {
    let mut out = String::new();
    let mut depth = 0i32;
    let mut need_operand = true; // at the start, after an operator or '('
    let mut previous: Option<&Token> = None;
    for t in tokens {
        // Adjacent operands mean AND.
        if matches!(t, Token::Operand(_) | Token::Open) && !need_operand {
            out.push_str(" AND ");
        }
        match t {
            Token::Operand(s) => {
                out.push_str(s);
                need_operand = false;
            }
            Token::Open => {
                out.push('(');
                depth += 1;
                need_operand = true;
            }
            Token::Close => {
                depth -= 1;
                if depth < 0 || need_operand {
                    return Err(QueryError::Parentheses);
                }
                out.push(')');
            }
            Token::And | Token::Or | Token::Not => {
                let name = match t {
                    Token::And => "AND",
                    Token::Or => "OR",
                    _ => "NOT",
                };
                if need_operand {
                    return Err(if *t == Token::Not {
                        QueryError::LeadingNot(name.to_string())
                    } else {
                        QueryError::Operator(name.to_string())
                    });
                }
                out.push(' ');
                out.push_str(name);
                out.push(' ');
                need_operand = true;
            }
        }
        previous = Some(t);
    }
    if depth != 0 {
        return Err(QueryError::Parentheses);
    }
    if need_operand && !out.is_empty() {
        let op = match previous {
            Some(Token::Not) => "NOT",
            Some(Token::Or) => "OR",
            _ => "AND",
        };
        return Err(QueryError::Operator(op.to_string()));
    }
    Ok((!out.is_empty()).then_some(out))
}

/// `YYYY-MM-DD` as Unix seconds at 00:00 UTC.
fn parse_date(s: &str) -> Result<i64, QueryError> {
    let bad = || QueryError::Date(s.to_string());
    let mut it = s.splitn(3, '-');
    let y: i64 = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let m: i64 = it
        .next()
        .and_then(|v| v.parse().ok())
        .filter(|m| (1..=12).contains(m))
        .ok_or_else(bad)?;
    let d: i64 = it
        .next()
        .and_then(|v| v.parse().ok())
        .filter(|d| (1..=31).contains(d))
        .ok_or_else(bad)?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Ok((era * 146_097 + doe - 719_468) * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fts(q: &str) -> String {
        Query::parse(q).expect("parses").fts.expect("words")
    }

    #[test]
    fn translates_the_language() {
        assert_eq!(fts("hello world"), r#""hello" AND "world""#);
        assert_eq!(
            fts(r#""secret plan" encr*"#),
            r#""secret plan" AND "encr" *"#
        );
        assert_eq!(fts("a OR b"), r#""a" OR "b""#);
        assert_eq!(fts("a -b"), r#""a" NOT "b""#);
        assert_eq!(
            fts("from:alice (x OR y)"),
            r#"sender : "alice" AND ("x" OR "y")"#
        );
        assert_eq!(fts("Grüße"), r#""Grüsse""#);
        assert_eq!(fts(r#"evil"OR"x"#), r#""evil OR x""#, "quotes never escape");
        let q = Query::parse("has:attachment before:2024-01-02 after:1970-01-01").expect("parses");
        assert_eq!(
            (q.has_attachment, q.before, q.after, q.fts),
            (true, Some(1_704_153_600), Some(0), None)
        );
    }

    #[test]
    fn explains_what_is_wrong() {
        assert_eq!(Query::parse(""), Err(QueryError::Empty));
        assert_eq!(Query::parse("\"open"), Err(QueryError::OpenQuote));
        assert_eq!(Query::parse("(a"), Err(QueryError::Parentheses));
        assert_eq!(Query::parse("a OR"), Err(QueryError::Operator("OR".into())));
        assert_eq!(
            Query::parse("-a"),
            Err(QueryError::LeadingNot("NOT".into()))
        );
        assert_eq!(
            Query::parse("colour:red"),
            Err(QueryError::UnknownField("colour".into()))
        );
        assert_eq!(
            Query::parse("before:2024-13-01"),
            Err(QueryError::Date("2024-13-01".into()))
        );
    }
}
