//! A reasoning model's thinking, told apart from its reply as the answer streams.
//!
//! Qwen3, QwQ, DeepSeek R1 and its distills, SmolLM3 and others open their answer
//! with `<think>…</think>`; their chat templates name the tags (the templates strip
//! the thinking from earlier turns). For a chat completion on such a model the
//! [`Splitter`] sends the thinking as reasoning (`reasoning_content`, as
//! llama-server and vLLM do) and the rest as the reply, with the whitespace
//! between the two dropped. A model configured `reasoning = "inline"` keeps the tags
//! in its reply.
//!
//! Magistral's `[THINK]…[/THINK]` are control tokens, written as their text for
//! this (see `llama::preserved_tokens`), and split the same way.

/// The tags around a model's thinking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tags {
    pub open: &'static str,
    pub close: &'static str,
}

impl Tags {
    /// `<think>` and `</think>`.
    pub const THINK: Tags = Tags {
        open: "<think>",
        close: "</think>",
    };

    /// Whether `prompt` ends inside the thinking: the chat template's generation
    /// prompt opens it (QwQ, DeepSeek R1's distills, Qwen3's thinking-only models),
    /// so the answer starts with the thought and only closes it.
    pub fn opened_by(self, prompt: &str) -> bool {
        prompt.trim_end().ends_with(self.open)
    }

    /// Magistral's `[THINK]` and `[/THINK]` (control tokens, which the engine
    /// writes as their text: `llama::preserved_tokens`).
    pub const BRACKETS: Tags = Tags {
        open: "[THINK]",
        close: "[/THINK]",
    };

    /// The tags a chat template (its Jinja source) knows, if any.
    pub fn of_template(template: Option<&str>) -> Option<Tags> {
        let t = template?;
        [Tags::THINK, Tags::BRACKETS]
            .into_iter()
            .find(|tags| t.contains(tags.close))
    }
}

/// One part of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Thinking, between the tags.
    Thinking(String),
    /// The reply.
    Reply(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace yet: thinking, or a reply?
    Start,
    Thinking,
    /// The thinking ended: whitespace before the reply is dropped.
    Between,
    Reply,
}

/// Splits an answer into [`Part`]s as it streams: text that may be the start of
/// a tag is held until it is known not to be (or the answer ends).
#[derive(Debug)]
pub struct Splitter {
    tags: Tags,
    state: State,
    held: String,
    /// The prompt opened the thinking: an answer that does not open it again
    /// starts inside it.
    opened: bool,
}

impl Splitter {
    pub fn new(tags: Tags) -> Self {
        Splitter {
            tags,
            state: State::Start,
            held: String::new(),
            opened: false,
        }
    }

    /// A splitter for an answer whose prompt opened the thinking (see
    /// [`Tags::opened_by`]).
    pub fn opened(tags: Tags) -> Self {
        Splitter {
            opened: true,
            ..Splitter::new(tags)
        }
    }

    /// Takes more of the answer; returns the parts it completes.
    pub fn push(&mut self, text: &str) -> Vec<Part> {
        self.held.push_str(text);
        let mut out = Vec::new();
        loop {
            match self.state {
                State::Start => {
                    let body = self.held.trim_start();
                    if let Some(rest) = body.strip_prefix(self.tags.open) {
                        self.held = rest.to_owned();
                        self.state = State::Thinking;
                    } else if self.tags.open.starts_with(body) {
                        return out; // whitespace, or the tag's beginning: wait
                    } else if self.opened {
                        self.state = State::Thinking;
                    } else {
                        self.state = State::Reply;
                    }
                }
                State::Thinking => match self.held.find(self.tags.close) {
                    Some(at) => {
                        let thought = self.held[..at].to_owned();
                        self.held.drain(..at + self.tags.close.len());
                        push_part(&mut out, Part::Thinking(thought));
                        self.state = State::Between;
                    }
                    None => {
                        // Hold back an end that may be the closing tag's beginning.
                        let keep = (1..self.tags.close.len())
                            .rev()
                            .find(|&n| self.held.ends_with(&self.tags.close[..n]))
                            .unwrap_or(0);
                        let sure = self.held.len() - keep;
                        let thought: String = self.held.drain(..sure).collect();
                        push_part(&mut out, Part::Thinking(thought));
                        return out;
                    }
                },
                State::Between => {
                    let rest = self.held.trim_start();
                    if rest.is_empty() {
                        self.held.clear();
                        return out;
                    }
                    self.held = rest.to_owned();
                    self.state = State::Reply;
                }
                State::Reply => {
                    let reply = std::mem::take(&mut self.held);
                    push_part(&mut out, Part::Reply(reply));
                    return out;
                }
            }
        }
    }

    /// The answer ended: what was held is what it looked like (an unclosed
    /// thought is thinking; a lone tag's beginning, the reply).
    pub fn finish(&mut self) -> Vec<Part> {
        let held = std::mem::take(&mut self.held);
        let mut out = Vec::new();
        match self.state {
            State::Thinking => push_part(&mut out, Part::Thinking(held)),
            State::Start if self.opened => push_part(&mut out, Part::Thinking(held)),
            State::Start | State::Reply => push_part(&mut out, Part::Reply(held)),
            State::Between => {}
        }
        out
    }
}

fn push_part(out: &mut Vec<Part>, part: Part) {
    match &part {
        Part::Thinking(t) | Part::Reply(t) if t.is_empty() => {}
        _ => out.push(part),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thinking and the reply `pieces` make, then the answer's end.
    fn split(pieces: &[&str]) -> (String, String) {
        split_with(Splitter::new(Tags::THINK), pieces)
    }

    fn split_with(mut s: Splitter, pieces: &[&str]) -> (String, String) {
        let (mut thinking, mut reply) = (String::new(), String::new());
        let mut parts: Vec<Part> = pieces.iter().flat_map(|p| s.push(p)).collect();
        parts.extend(s.finish());
        for p in parts {
            match p {
                Part::Thinking(t) => thinking.push_str(&t),
                Part::Reply(t) => reply.push_str(&t),
            }
        }
        (thinking, reply)
    }

    fn by_char(text: &str) -> (String, String) {
        let pieces: Vec<String> = text.chars().map(String::from).collect();
        split(&pieces.iter().map(String::as_str).collect::<Vec<_>>())
    }

    #[test]
    fn thinking_then_the_reply_in_any_pieces() {
        let text = "<think>\nThe user greets me.\nGreet back.\n</think>\n\nHello! <b>Hi</b>";
        let want = (
            "\nThe user greets me.\nGreet back.\n".to_owned(),
            "Hello! <b>Hi</b>".to_owned(),
        );
        assert_eq!(split(&[text]), want);
        assert_eq!(by_char(text), want);
        assert_eq!(
            split(&["  <thi", "nk>a</th", "ink>", "\n", "\n", "b"]),
            ("a".to_owned(), "b".to_owned())
        );
    }

    #[test]
    fn a_reply_without_thinking_is_all_reply() {
        assert_eq!(
            by_char("Hello <think> there"),
            (String::new(), "Hello <think> there".to_owned())
        );
        assert_eq!(
            split(&["<", "b>bold</b>"]),
            (String::new(), "<b>bold</b>".to_owned())
        );
        // A tag's beginning at the very end is the reply after all.
        assert_eq!(split(&["<thi"]), (String::new(), "<thi".to_owned()));
        assert_eq!(split(&["  "]), (String::new(), "  ".to_owned()));
    }

    #[test]
    fn nothing_is_said_before_it_is_known_and_an_unclosed_thought_is_thinking() {
        let mut s = Splitter::new(Tags::THINK);
        assert_eq!(s.push("<thi"), vec![]);
        assert_eq!(s.push("nk>ab</"), vec![Part::Thinking("ab".into())]);
        assert_eq!(s.push("x"), vec![Part::Thinking("</x".into())]);
        // Cut off by max_tokens while thinking.
        assert_eq!(s.push("c"), vec![Part::Thinking("c".into())]);
        assert_eq!(s.finish(), vec![]);
        let mut s = Splitter::new(Tags::THINK);
        s.push("<think>a</thin");
        assert_eq!(s.finish(), vec![Part::Thinking("</thin".into())]);
    }

    /// QwQ's and DeepSeek R1's templates end the prompt with `<think>\n`: the
    /// answer is the thought, `</think>`, then the reply.
    #[test]
    fn an_answer_to_a_prompt_that_opened_the_thinking_starts_inside_it() {
        let t = Tags::THINK;
        assert!(t.opened_by("<|im_start|>assistant\n<think>\n"));
        assert!(t.opened_by("<｜Assistant｜><think>"));
        assert!(!t.opened_by("<|im_start|>assistant\n"));
        // Qwen3 with enable_thinking false: an empty thought, closed.
        assert!(!t.opened_by("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
        let opened = || Splitter::opened(Tags::THINK);
        assert_eq!(
            split_with(opened(), &["Two ", "and two.\n</th", "ink>\n\nFour."]),
            ("Two and two.\n".to_owned(), "Four.".to_owned())
        );
        // A model that opens it again anyway, and one cut off while thinking.
        assert_eq!(
            split_with(opened(), &["<think>a</think>b"]),
            ("a".to_owned(), "b".to_owned())
        );
        assert_eq!(
            split_with(opened(), &["still ", "thinking"]),
            ("still thinking".to_owned(), String::new())
        );
    }

    #[test]
    fn magistrals_brackets_split_the_same_way() {
        let s = Splitter::new(Tags::BRACKETS);
        assert_eq!(
            split_with(s, &["[THI", "NK]Two and two.[/TH", "INK]", "\n\nFour."]),
            ("Two and two.".to_owned(), "Four.".to_owned())
        );
    }

    #[test]
    fn templates_that_strip_thinking_name_the_tags() {
        let qwen3 = "{%- if '</think>' in content %}{%- set content = content.split('</think>')[-1] %}{%- endif %}";
        assert_eq!(Tags::of_template(Some(qwen3)), Some(Tags::THINK));
        assert_eq!(Tags::of_template(Some("<|im_start|>{{ m.content }}")), None);
        let v13 = include_str!("../tests/templates/mistral-common-1.13.1-v13-think.jinja");
        assert_eq!(Tags::of_template(Some(v13)), Some(Tags::BRACKETS));
        let v11 = include_str!("../tests/templates/mistral-common-1.13.1-v11.jinja");
        assert_eq!(Tags::of_template(Some(v11)), None);
        assert_eq!(Tags::of_template(None), None);
    }
}
