//! Error messages for people.

/// An error and its causes on one line. Some libraries' messages leave out
/// their cause (reqwest's "error sending request" without the "connection
/// refused" behind it); this adds each cause that the text does not already
/// contain.
pub fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn causes_are_appended_once() {
        let err = Outer(std::io::Error::other("connection refused"));
        assert_eq!(with_causes(&err), "outer: connection refused");
    }
}
