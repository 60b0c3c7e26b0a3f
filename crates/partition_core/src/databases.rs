//! The `pg_partition_predict.database` setting: which databases get a worker.

/// Splits a comma-separated list of database names. Names may be
/// double-quoted to contain commas or spaces (`"my db", analytics`);
/// duplicates and empty entries are dropped, order is kept.
pub fn parse_database_list(setting: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = setting.chars().peekable();
    let push = |name: &mut String, was_quoted: bool, names: &mut Vec<String>| {
        let value = if was_quoted {
            name.clone()
        } else {
            name.trim().to_string()
        };
        if !value.is_empty() && !names.contains(&value) {
            names.push(value);
        }
        name.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            '"' => {
                if !quoted {
                    current.clear();
                }
                quoted = !quoted;
                was_quoted = true;
            }
            ',' if !quoted => {
                push(&mut current, was_quoted, &mut names);
                was_quoted = false;
            }
            c if was_quoted && !quoted => {
                // Text after a closing quote: only whitespace is meaningful-less.
                if !c.is_whitespace() {
                    current.push(c);
                }
            }
            c => current.push(c),
        }
    }
    push(&mut current, was_quoted, &mut names);
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        assert_eq!(parse_database_list("postgres"), vec!["postgres"]);
        assert_eq!(
            parse_database_list(" app , analytics,,app "),
            vec!["app", "analytics"]
        );
        assert_eq!(
            parse_database_list(r#""my, db", "Quote""d""#),
            vec!["my, db", "Quote\"d"]
        );
        assert!(parse_database_list("  ").is_empty());
    }
}
