//! Every piece of text in the report comes from the database (table names,
//! partition labels, alert messages), so nothing may reach the markup raw.

/// Escapes text for use in XML/HTML element content and quoted attributes.
///
/// Characters that XML 1.0 forbids outright (most C0 controls, U+FFFE,
/// U+FFFF) cannot be escaped at all, so they become U+FFFD: a table name
/// holding a control character must not make the whole page unparsable.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn markup_characters_cannot_break_out_of_text_or_attributes() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn characters_xml_cannot_carry_are_replaced_not_dropped_silently() {
        assert_eq!(escape("a\u{1}b\tc"), "a\u{FFFD}b\tc");
    }
}
