//! DataFusion errors → job errors with a line and column in the job or SQL file.

use datafusion::arrow::datatypes::Schema;
use datafusion::error::DataFusionError;

use crate::jobfile::{closest, JobError, SqlText};

pub fn to_job_error(sql: &SqlText, schema: &Schema, e: &DataFusionError) -> JobError {
    let message = clean(&e.to_string());
    // An unknown column, from the error itself rather than its text.
    if let Some((name, valid)) = field_not_found(e) {
        return unknown_column(sql, &name, &valid);
    }
    // A column neither grouped nor aggregated (DataFusion words it as a wildcard expansion).
    if let Some(column) = between(&message, "column \"", "\" must appear in the GROUP BY clause") {
        let short = column.rsplit('.').next().unwrap_or(&column).to_string();
        return locate(sql, &short, format!("SQL: column `{short}` must be in GROUP BY or inside an aggregate function"))
            .with_help(format!("add `{short}` to GROUP BY, or aggregate it, for example max({short})"));
    }
    // Operands of an operator that do not fit: point at the operator.
    if let Some(expr) = between(&message, "Cannot coerce arithmetic expression ", " to valid types") {
        let op = expr.split_whitespace().nth(1).unwrap_or("").to_string();
        let text = format!("SQL: `{op}` cannot combine {}", expr.replacen(&format!(" {op} "), " and ", 1));
        return locate_symbol(sql, &op, text).with_help("cast one side (CAST(x AS BIGINT)) so both have a type the operator takes");
    }
    // A function given the wrong types: say which, and point at the call.
    if let Some(call) = between(&message, "No function matches the given name and argument types '", "'") {
        return function_error(sql, schema, &call, &message);
    }
    // 1. DataFusion's own diagnostic, when it has a span.
    if let Some(d) = e.diagnostic() {
        if let Some(span) = d.span {
            let width = if span.start.line == span.end.line {
                (span.end.column.saturating_sub(span.start.column)) as usize
            } else {
                1
            };
            let mut err = sql.error_at(span.start.line as usize, span.start.column as usize, width, format!("SQL: {}", d.message));
            if let Some(help) = d.helps.first() {
                err = err.with_help(help.message.clone());
            } else if let Some(note) = d.notes.first() {
                err = err.with_help(note.message.clone());
            }
            if message.contains("table '") && message.contains("not found") {
                err = err.with_help("the rows of each window are the table `events`");
            }
            return with_column_hint(err, &message);
        }
    }
    // 2. The parser's "at Line: L, Column: C".
    if let Some((line, col)) = parser_position(&message) {
        return sql.error_at(line, col, 1, format!("SQL syntax: {}", strip_position(&message)));
    }
    // 3. An unknown column or table: find the name in the SQL.
    if let Some(name) = quoted_after(&message, "No field named ") {
        let short = name.rsplit('.').next().unwrap_or(&name).to_string();
        let err = locate(sql, &short, format!("SQL: unknown column `{short}`"));
        return with_column_hint(err, &message);
    }
    if let Some(name) = quoted_after(&message, "table '") {
        let short = name.rsplit('.').next().unwrap_or(&name).to_string();
        return locate(sql, &short, format!("SQL: unknown table `{short}`"))
            .with_help("the rows of each window are the table `events`");
    }
    sql.error_at(1, 1, 1, format!("SQL: {message}"))
}

/// The unknown column and the valid ones, when the error (or one it wraps) says so.
fn field_not_found(e: &DataFusionError) -> Option<(String, Vec<String>)> {
    use datafusion::common::SchemaError;
    let mut e = e;
    loop {
        match e {
            DataFusionError::Diagnostic(_, inner) | DataFusionError::Context(_, inner) => e = inner,
            DataFusionError::Shared(inner) => e = inner,
            DataFusionError::SchemaError(schema_error, _) => {
                let SchemaError::FieldNotFound { field, valid_fields } = schema_error.as_ref() else { return None };
                return Some((field.name.clone(), valid_fields.iter().map(|c| c.name.clone()).filter(|n| !n.contains('(')).collect()));
            }
            _ => return None,
        }
    }
}

/// `name` is not a column: point at it, and say what was meant. SQL folds unquoted names to
/// lower case, so a mixed-case column must be quoted.
fn unknown_column(sql: &SqlText, name: &str, valid: &[String]) -> JobError {
    let err = locate(sql, name, format!("SQL: unknown column `{name}`"));
    if let Some(exact) = valid.iter().find(|v| v.eq_ignore_ascii_case(name) && *v != name) {
        return err.with_help(format!("column names are case-sensitive and SQL lower-cases unquoted names: write \"{exact}\" in double quotes"));
    }
    match closest(name, valid.iter().map(String::as_str)) {
        Some(near) => err.with_help(format!("did you mean `{near}`? (columns: {})", valid.join(", "))),
        None => err.with_help(format!("the columns of `events` are {}", valid.join(", "))),
    }
}

/// An error at the first occurrence of an operator symbol in the SQL.
fn locate_symbol(sql: &SqlText, symbol: &str, message: String) -> JobError {
    if !symbol.is_empty() {
        for (i, line) in sql.text.lines().enumerate() {
            if let Some(at) = line.find(symbol) {
                return sql.error_at(i + 1, line[..at].chars().count() + 1, symbol.chars().count(), message);
            }
        }
    }
    sql.error_at(1, 1, 1, message)
}

pub(super) fn clean(m: &str) -> String {
    let m = m.trim();
    let m = m.strip_prefix("type_coercion\ncaused by\n").unwrap_or(m);
    for prefix in ["Error during planning: ", "Schema error: ", "SQL error: ", "Execution error: ", "This feature is not implemented: "] {
        if let Some(rest) = m.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    m.to_string()
}

/// Suggest the nearest column for "No field named x. Valid fields are ...".
fn with_column_hint(err: JobError, message: &str) -> JobError {
    let (Some(name), Some(valid)) = (quoted_after(message, "No field named "), message.split("Valid fields are ").nth(1)) else {
        return err;
    };
    let short = name.rsplit('.').next().unwrap_or(&name).to_string();
    let fields: Vec<String> = valid
        .trim_end_matches('.')
        .split(", ")
        .map(|f| f.rsplit('.').next().unwrap_or(f).trim_matches('"').to_string())
        .collect();
    match closest(&short, fields.iter().map(String::as_str)) {
        Some(near) => err.with_help(format!("did you mean `{near}`? (columns: {})", fields.join(", "))),
        None => err.with_help(format!("the columns of `events` are {}", fields.join(", "))),
    }
}

fn parser_position(m: &str) -> Option<(usize, usize)> {
    let at = m.rfind("Line: ")?;
    let rest = &m[at + 6..];
    let line: usize = rest.split(',').next()?.trim().parse().ok()?;
    let col_at = rest.find("Column: ")?;
    let col: usize = rest[col_at + 8..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok()?;
    Some((line, col))
}

fn strip_position(m: &str) -> String {
    let m = m.strip_prefix("sql parser error: ").unwrap_or(m);
    let m = m.strip_prefix("ParserError(\"").unwrap_or(m);
    match m.rfind(" at Line: ") {
        Some(i) => m[..i].to_string(),
        None => m.to_string(),
    }
}

/// The text between the quotes that follow `marker`: `No field named "x"` or `... x.`
fn quoted_after(m: &str, marker: &str) -> Option<String> {
    let rest = &m[m.find(marker)? + marker.len()..];
    let rest = rest.trim_start_matches(['"', '\'', '`']);
    let name: String = rest.chars().take_while(|c| !matches!(c, '"' | '\'' | '`' | ' ' | ',')).collect();
    let name = name.trim_end_matches('.').replace('"', "");
    (!name.is_empty()).then_some(name)
}

/// An error at the first whole-word occurrence of `word` in the SQL (case-insensitive).
fn locate(sql: &SqlText, word: &str, message: String) -> JobError {
    for (i, line) in sql.text.lines().enumerate() {
        let lower = line.to_lowercase();
        let w = word.to_lowercase();
        let mut from = 0;
        while let Some(pos) = lower[from..].find(&w) {
            let at = from + pos;
            let before = lower[..at].chars().last();
            let after = lower[at + w.len()..].chars().next();
            let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            if boundary(before) && boundary(after) {
                let col = line[..at].chars().count() + 1;
                return sql.error_at(i + 1, col, word.chars().count(), message);
            }
            from = at + w.len();
        }
    }
    sql.error_at(1, 1, 1, message)
}

fn between(m: &str, start: &str, end: &str) -> Option<String> {
    let from = m.find(start)? + start.len();
    let len = m[from..].find(end)?;
    Some(m[from..from + len].to_string())
}

/// `sum(Utf8)`: point at the call whose argument is a column of that type, else the first call.
fn function_error(sql: &SqlText, schema: &Schema, call: &str, message: &str) -> JobError {
    let name = call.split('(').next().unwrap_or(call).to_lowercase();
    let types = call.split_once('(').map(|(_, t)| t.trim_end_matches(')').to_string()).unwrap_or_default();
    let candidates: Vec<String> = message
        .lines()
        .map(str::trim)
        .filter(|l| l.to_lowercase().starts_with(&format!("{name}(")))
        .map(str::to_string)
        .collect();
    let mut text = format!("SQL: `{name}` does not take ({types})");
    if !candidates.is_empty() {
        text.push_str(&format!("; it takes {}", candidates.join(", ")));
    }
    let lower = sql.text.to_lowercase();
    let mut first = None;
    let mut best = None;
    let mut from = 0;
    while let Some(pos) = lower[from..].find(&format!("{name}(")) {
        let at = from + pos;
        from = at + name.len() + 1;
        if at > 0 && lower[..at].chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        first.get_or_insert(at);
        let arg: String = lower[from..].chars().take_while(|c| *c != ')').collect();
        let arg = arg.trim().trim_matches('"');
        if let Ok(f) = schema.field_with_name(arg) {
            if types.split(',').any(|t| t.trim() == f.data_type().to_string()) {
                best = Some(at);
                break;
            }
        }
    }
    match best.or(first) {
        Some(at) => {
            let line = sql.text[..at].matches('\n').count() + 1;
            let col = sql.text[..at].rsplit('\n').next().unwrap_or("").chars().count() + 1;
            sql.error_at(line, col, name.len(), text)
        }
        None => sql.error_at(1, 1, 1, text),
    }
    .with_help("cast the argument (CAST(x AS DOUBLE)) or use a column of a type the function takes")
}
