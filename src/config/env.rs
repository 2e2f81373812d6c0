//! Environment-variable expansion of the config text, compatible with Go's `os.ExpandEnv`.

/// Expands `$NAME` and `${NAME}` in `text` from the process environment.
///
/// This is what Litestream does to the whole config file before parsing it (comments
/// included) unless `-no-expand-env` is given. The rules are Go's `os.ExpandEnv`:
///
/// | text | result |
/// |---|---|
/// | `$NAME`, `${NAME}` (`NAME` = `[A-Za-z0-9_]+`) | the value, or empty when unset |
/// | `${}` | removed |
/// | `${` with no closing `}` | the `${` is removed |
/// | `$` before any other character (`$%`, `$ `) or at the end | kept literally |
/// | `$1`, `$*`, `$#`, `$@`, `$!`, `$?`, `$-` | a one-character variable (normally empty) |
///
/// Two improvements over Go, so that values containing `$` can be written:
///
/// * `$$` gives a literal `$` (Go looks up a variable named `$` and yields an empty string, so
///   a password such as `pa$$word` silently became `paword`);
/// * `${NAME:-default}` gives `default` when `NAME` is unset or empty (Go looks up a variable
///   literally named `NAME:-default`, i.e. yields empty). The default is used verbatim: it is not
///   itself expanded and cannot contain `}`.
pub fn expand_env(text: &str) -> String {
    expand_env_with(text, |name| {
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
    })
}

/// Like [`expand_env`], with variables looked up through `lookup` instead of the process
/// environment (`None` = unset). Used by tests and by embedders that keep their own environment.
pub fn expand_env_with<F>(text: &str, lookup: F) -> String
where
    F: Fn(&str) -> Option<String>,
{
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut literal_start = 0;
    let mut j = 0;
    while j < bytes.len() {
        if bytes[j] == b'$' && j + 1 < bytes.len() {
            // Every index used below sits next to an ASCII byte, so slicing stays on char
            // boundaries.
            out.push_str(&text[literal_start..j]);
            let (token, width) = shell_name(&text[j + 1..]);
            match token {
                Token::Eat => {}
                Token::Literal | Token::Dollar => out.push('$'),
                Token::Var(name) => out.push_str(&lookup(name).unwrap_or_default()),
                Token::Default(name, default) => match lookup(name) {
                    Some(v) if !v.is_empty() => out.push_str(&v),
                    _ => out.push_str(default),
                },
            }
            j += width + 1;
            literal_start = j;
        } else {
            j += 1;
        }
    }
    out.push_str(&text[literal_start..]);
    out
}

/// What follows a `$`.
enum Token<'a> {
    /// Bad syntax (`${}`, unterminated `${`): the consumed bytes disappear, as in Go.
    Eat,
    /// Not a variable reference: keep the `$` and continue after it.
    Literal,
    /// `$$`: a literal `$` (walship extension).
    Dollar,
    Var(&'a str),
    /// `${NAME:-default}` (walship extension).
    Default(&'a str, &'a str),
}

fn is_shell_special(b: u8) -> bool {
    matches!(
        b,
        b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9'
    )
}

fn is_name_byte(b: u8) -> bool {
    b == b'_' || b.is_ascii_alphanumeric()
}

/// Reads the variable reference at the start of `s` (the text after a `$`; never empty) and
/// returns it with the number of bytes it spans, following Go's `getShellName`.
fn shell_name(s: &str) -> (Token<'_>, usize) {
    let b = s.as_bytes();
    if b[0] == b'{' {
        if b.len() > 2 && is_shell_special(b[1]) && b[2] == b'}' {
            return (Token::Var(&s[1..2]), 3);
        }
        return match s[1..].find('}') {
            Some(0) => (Token::Eat, 2),
            Some(end) => {
                let inner = &s[1..end + 1];
                let token = match inner.split_once(":-") {
                    Some((name, default)) if !name.is_empty() && name.bytes().all(is_name_byte) => {
                        Token::Default(name, default)
                    }
                    _ => Token::Var(inner),
                };
                (token, end + 2)
            }
            None => (Token::Eat, 1),
        };
    }
    if b[0] == b'$' {
        return (Token::Dollar, 1);
    }
    if is_shell_special(b[0]) {
        return (Token::Var(&s[..1]), 1);
    }
    let len = b.iter().take_while(|&&c| is_name_byte(c)).count();
    if len == 0 {
        (Token::Literal, 0)
    } else {
        (Token::Var(&s[..len]), len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/u".into()),
            "BUCKET" => Some("bkt".into()),
            "EMPTY" => Some(String::new()),
            "A_1" => Some("x".into()),
            "1" => Some("one".into()),
            "NAME:-dflt" => Some("go-style lookup".into()),
            _ => None,
        }
    }

    fn x(s: &str) -> String {
        expand_env_with(s, env)
    }

    #[test]
    fn go_rules() {
        // Each row of the spec's §5.1 table.
        assert_eq!(x("$BUCKET"), "bkt");
        assert_eq!(x("${BUCKET}"), "bkt");
        assert_eq!(x("s3://$BUCKET/db"), "s3://bkt/db");
        assert_eq!(x("s3://${BUCKET}x/db"), "s3://bktx/db");
        assert_eq!(x("$BUCKETx"), "", "the name runs to the last [A-Za-z0-9_]");
        assert_eq!(x("$A_1.y"), "x.y");
        assert_eq!(x("$UNSET"), "");
        assert_eq!(x("a${UNSET}b"), "ab");
        assert_eq!(x("a${}b"), "ab", "${{}} is removed");
        assert_eq!(x("a${BUCKET"), "aBUCKET", "an unterminated ${{ is removed");
        assert_eq!(x("100$%"), "100$%");
        assert_eq!(x("a$ b"), "a$ b");
        assert_eq!(x("cost: 5$"), "cost: 5$", "a trailing $ is kept");
        assert_eq!(x("$"), "$");
        assert_eq!(x("$1"), "one");
        assert_eq!(x("$12"), "one2", "special variables are one character");
        assert_eq!(x("${1}"), "one");
        for special in ["$*", "$#", "$@", "$!", "$?", "$-", "$0"] {
            assert_eq!(x(special), "", "{special}");
        }
        assert_eq!(x("${a b}"), "", "anything up to }} is a name lookup");
        assert_eq!(x("# $HOME in a comment"), "# /home/u in a comment");
        assert_eq!(x("no dollars: ünïcödé"), "no dollars: ünïcödé");
        assert_eq!(x("ü$BUCKETü"), "übktü");
        assert_eq!(x("ü${BUCKET}ü"), "übktü");
    }

    #[test]
    fn extensions() {
        assert_eq!(x("pa$$word"), "pa$word");
        assert_eq!(x("$$"), "$");
        assert_eq!(x("$$$$"), "$$");
        assert_eq!(x("$$BUCKET"), "$BUCKET");
        assert_eq!(x("$$$BUCKET"), "$bkt");
        assert_eq!(x("${UNSET:-us-east-1}"), "us-east-1");
        assert_eq!(x("${EMPTY:-fallback}"), "fallback");
        assert_eq!(x("${BUCKET:-other}"), "bkt");
        assert_eq!(x("${UNSET:-}"), "");
        assert_eq!(x("${UNSET:-$HOME}"), "$HOME", "defaults are not expanded");
        assert_eq!(x("${UNSET:-a:-b}"), "a:-b");
        // Not a valid name before ":-": Go's lookup of the whole text applies.
        assert_eq!(x("${:-x}"), "");
    }

    #[test]
    fn process_environment() {
        // PATH is set in any test environment.
        let path = std::env::var("PATH").unwrap_or_default();
        assert_eq!(expand_env("${PATH}"), path);
        assert_eq!(expand_env("$WALSHIP_SURELY_UNSET_VARIABLE_42"), "");
    }
}
