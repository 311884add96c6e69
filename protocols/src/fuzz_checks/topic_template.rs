//! Topic templates: parsing arbitrary templates and matching arbitrary topics
//! must never panic, and a parsed template's filter must parse again.

use crate::topic::TopicTemplate;

/// Runs the `topic_template` fuzz target's checks on one input. Panics on a violated
/// invariant, which is what the fuzzer and the corpus test look for.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line is the template, the rest are topics to match.
    let mut lines = text.split('\n');
    let Some(template) = lines.next() else {
        return;
    };
    let Ok(tpl) = template.parse::<TopicTemplate>() else {
        return;
    };
    let filter: TopicTemplate = tpl
        .filter()
        .parse()
        .expect("the filter of a valid template is a valid template");
    for topic in lines {
        let matched = tpl.matches(topic);
        // A topic the template matches also matches its filter.
        if let Ok(Some(_)) = matched {
            assert!(matches!(filter.matches(topic), Ok(Some(_))));
        }
    }
}
