"""Templates (parsing, conversion, rendering with truncation) and verbalizers (mapping parsing)."""
from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoprompt_search.errors import UserError
from autoprompt_search.tasks import get_task, task_names
from autoprompt_search.prompts import Block, Part, Template, load_template_lines, render_blocks
from autoprompt_search.prompts import Verbalizer, load_mapping_lines, parse_mapping_text

from conftest import FILLER_WORDS, train_byte_level_bpe_tokenizer, train_t5_sentencepiece, train_wordpiece_tokenizer

# ---------------------------------------------------------------------------------------------
# Parsing


@pytest.mark.parametrize("variable, expected", [
    ("cls", Part("cls")),
    ("mask", Part("mask")),
    ("sep", Part("sep")),
    ("sep+", Part("sep+")),
    ("sent_0", Part("sent", index=0)),
    ("sent_1", Part("sent", index=1)),
    ("+sent_1", Part("sent", index=1, space=True)),
    ("sent-_0", Part("sent", index=0, drop_last=True)),
    ("sentl_1", Part("sent", index=1, case="l")),
    ("sentu_0", Part("sent", index=0, case="u")),
    ("+sentl_1", Part("sent", index=1, space=True, case="l")),
    ("+sentu_1", Part("sent", index=1, space=True, case="u")),
    ("sentl-_0", Part("sent", index=0, case="l", drop_last=True)),
    ("label_2", Part("label", index=2)),
    ("labelx_3", Part("labelx", index=3)),
])
def test_every_lmbff_variable_parses_in_both_syntaxes(variable, expected):
    mask = "" if variable == "mask" else "*mask*"
    lmbff = Template.parse(f"*{variable}*{mask}", require_mask=False)
    readable = Template.parse("{" + variable + "}" + ("" if variable == "mask" else "{mask}"), require_mask=False)
    assert lmbff.parts[0] == expected
    assert readable.parts[0] == expected
    assert expected.variable_name() == variable


def test_literal_text_turns_underscores_into_spaces():
    template = Template.parse("*cls**sent_0*_It_was*mask*.*sep+*")
    assert [p.kind for p in template.parts] == ["cls", "sent", "text", "mask", "text", "sep+"]
    assert template.parts[2].text == " It was"
    assert template.parts[4].text == "."
    assert template.num_sentences == 1


def test_readable_syntax_equals_lmbff_syntax():
    assert Template.parse("{sent_0} It was{mask}.") == Template.parse("*sent_0*_It_was*mask*.")
    assert Template.parse("{cls}{sent-_0}?{mask},{+sentl_1}{sep+}") == Template.parse("*cls**sent-_0*?*mask*,*+sentl_1**sep+*")
    assert Template.parse("{sent_0} It was{mask}.").to_lmbff() == "*sent_0*_It_was*mask*."
    assert Template.parse("*sent_0*_It_was*mask*.").to_readable() == "{sent_0} It was{mask}."


def test_readable_syntax_escapes_braces():
    template = Template.parse("{{quoted}} {sent_0}{mask}.")
    assert template.parts[0] == Part("text", text="{quoted} ")
    assert Template.parse(template.to_readable()) == template


@pytest.mark.parametrize("name", task_names())
def test_manual_template_round_trips_through_readable_syntax(name):
    lmbff = get_task(name).template
    template = Template.parse(lmbff)
    readable = template.to_readable()
    assert "*" not in readable and "{mask}" in readable
    again = Template.parse(readable)
    assert again == template
    assert again.to_lmbff() == lmbff
    assert template.num_sentences == get_task(name).num_sentences


_SENT_NAMES = ["sent_{i}", "+sent_{i}", "sent-_{i}", "sentl_{i}", "sentu_{i}", "+sentl_{i}", "+sentu_{i}", "sentl-_{i}"]
_literal = st.text(alphabet="abcXYZ .,?:!'0123456789", min_size=1, max_size=8)
_variable = st.one_of(
    st.sampled_from(["cls", "sep", "sep+"]),
    st.builds(lambda name, i: name.format(i=i), st.sampled_from(_SENT_NAMES), st.integers(0, 3)),
    st.builds(lambda kind, i: f"{kind}_{i}", st.sampled_from(["label", "labelx"]), st.integers(0, 9)),
)


def _join(pieces: list[tuple[str, str]], syntax: str) -> str:
    out = []
    for kind, value in pieces:
        if kind == "text":
            out.append(value.replace(" ", "_") if syntax == "lmbff" else value)
        else:
            out.append(f"*{value}*" if syntax == "lmbff" else "{" + value + "}")
    return "".join(out)


@st.composite
def generated_templates(draw) -> list[tuple[str, str]]:
    pieces = draw(st.lists(st.one_of(st.tuples(st.just("text"), _literal), st.tuples(st.just("var"), _variable)),
                           max_size=8))
    pieces.insert(draw(st.integers(0, len(pieces))), ("var", "mask"))
    return pieces


@settings(max_examples=200, deadline=None)
@given(generated_templates())
def test_generated_templates_round_trip_between_syntaxes(pieces):
    lmbff, readable = _join(pieces, "lmbff"), _join(pieces, "readable")
    from_lmbff = Template.parse(lmbff)
    from_readable = Template.parse(readable)
    assert from_lmbff == from_readable
    assert Template.parse(from_lmbff.to_readable()) == from_lmbff
    assert Template.parse(from_readable.to_lmbff()) == from_readable
    expected_vars = [value for kind, value in pieces if kind == "var"]
    assert [p.variable_name() for p in from_lmbff.parts if p.kind != "text"] == expected_vars
    literal = "".join(value for kind, value in pieces if kind == "text")
    assert "".join(p.text for p in from_lmbff.parts if p.kind == "text") == literal


@pytest.mark.parametrize("text, message", [
    ("*cls**sent_0*_It_was.*sep+*", "0 mask slots"),
    ("{sent_0} It was.", "0 mask slots"),
    ("*cls**sent_0**mask*_and*mask*.*sep+*", "2 mask slots"),
    ("{sent_0}{mask} and {mask}", "2 mask slots"),
    ("{sent_0} It was{msk}.{mask}", "unknown variable 'msk'"),
    ("{sent_0} It was{mask}.{sentence_0}", "unknown variable 'sentence_0'"),
    ("*cls**sentx_0*_It_was*mask*.", "unknown variable 'sentx_0'"),
    ("{sent_0} It was{mask.", "unbalanced brace"),
    ("{sent_0} It was{mask}.}", "unbalanced brace"),
    ("", "empty"),
    ("   ", "empty"),
])
def test_malformed_templates_raise_user_error(text, message):
    with pytest.raises(UserError, match=re.escape(message)):
        Template.parse(text)


def test_wrong_sentence_count_is_reported():
    template = Template.parse("*cls**sent_0*_It_was*mask*.*sep+*")
    template.validate(num_sentences=1)
    with pytest.raises(UserError, match=r"missing \[1\]"):
        template.validate(num_sentences=2)


def test_lmbff_export_refuses_underscores_in_literal_text():
    template = Template.parse("{sent_0} snake_case{mask}")
    with pytest.raises(UserError, match="'_'"):
        template.to_lmbff()


@pytest.mark.parametrize("literal", ["mask", "cls", "sep", "sep+"])
def test_lmbff_export_refuses_literal_text_that_reads_as_a_variable(literal):
    template = Template.parse("{sent_0}" + literal + "{mask}")
    assert template.parts[1] == Part("text", text=literal)
    with pytest.raises(UserError, match="would read as a variable"):
        template.to_lmbff()


def test_template_file_reports_the_bad_line(tmp_path):
    path = tmp_path / "templates.txt"
    path.write_text("# comment\n*cls**sent_0*_It_was*mask*.*sep+*\t0.9\n\n*cls**sent_0*_no_mask*sep+*\n")
    with pytest.raises(UserError, match=r"templates.txt, line 4: .*0 mask slots"):
        load_template_lines(path)
    path.write_text("*cls**sent_0*_It_was*mask*.*sep+*\t0.9\n{sent_0} so{mask}!\n")
    assert [t.to_readable() for t in load_template_lines(path)] == ["{cls}{sent_0} It was{mask}.{sep+}", "{sent_0} so{mask}!"]


# ---------------------------------------------------------------------------------------------
# Rendering


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    """The three tokenizer families, without models: WordPiece (BERT), byte-level BPE (GPT-2/Llama)
    and SentencePiece (T5)."""
    root = tmp_path_factory.mktemp("tokenizers")
    return {
        "wordpiece": train_wordpiece_tokenizer(root / "wordpiece"),
        "bpe": train_byte_level_bpe_tokenizer(root / "bpe"),
        "t5": train_t5_sentencepiece(root / "t5"),
    }


def _slot(tokenizer) -> tuple[str, int]:
    """The mask text and id a caller would use: the MLM mask, T5's first sentinel, or a placeholder
    word for the causal tokenizer (its id is looked up from the rendered prompt)."""
    if tokenizer.mask_token is not None:
        return tokenizer.mask_token, tokenizer.mask_token_id
    if "T5" in type(tokenizer).__name__:
        return "<extra_id_0>", tokenizer.convert_tokens_to_ids("<extra_id_0>")
    return " great", None


def _special(kind: str, family: str) -> str:
    return {"wordpiece": {"cls": "[CLS]", "sep": "[SEP]"},
            "bpe": {"cls": "<|endoftext|>", "sep": ""},
            "t5": {"cls": "", "sep": "</s>"}}[family][kind]


def _render(tokenizer, template: str, texts, max_length=128, demos=(), **kwargs):
    slot_text, slot_id = _slot(tokenizer)
    blocks = [Block(Template.parse(template), tuple(texts))]
    blocks += [Block(Template.parse(template), tuple(d), label_word="great", is_demonstration=True) for d in demos]
    return render_blocks(blocks, tokenizer, max_length=max_length, slot_text=slot_text, mask_token_id=slot_id, **kwargs)


FAMILIES = ["wordpiece", "bpe", "t5"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("template, texts, expected", [
    ("*cls**sent_0*_It_was*mask*.*sep+*", ["A great movie."], "{cls}A great movie. It was{slot}.{sep}"),
    ("*cls**sent-_0*?*mask*,*+sentl_1**sep+*", ["A great movie.", "The film is dull."],
     "{cls}A great movie?{slot}, the film is dull.{sep}"),
    ("*cls**sentl-_0*_and*+sentu_1**mask*.*sep*", ["The film.", "the cast!"], "{cls}the film and The cast!{slot}.{sep}"),
    ("*cls**mask*:*+sent_0**sep+*", ["What is it?"], "{cls}{slot}: What is it?{sep}"),
    ("*cls**sent_0**+sentl_1*_It_was*mask*.", ["Good.", "Bad."], "{cls}Good. bad. It was{slot}."),
])
def test_rendering_applies_lmbff_modifiers(tokenizers, family, template, texts, expected):
    tokenizer = tokenizers[family]
    slot_text, slot_id = _slot(tokenizer)
    rendered = _render(tokenizer, template, texts)
    assert rendered.text == expected.format(cls=_special("cls", family), sep=_special("sep", family), slot=slot_text)
    assert rendered.slot_text == slot_text
    assert not rendered.truncated
    if slot_id is not None:
        assert rendered.input_ids.count(slot_id) == 1
        assert rendered.input_ids[rendered.mask_index] == slot_id
    # The ids are the tokenisation of the whole text, not of pieces glued together.
    assert rendered.input_ids == tokenizer(rendered.text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("family", FAMILIES)
def test_label_word_follows_a_space_unless_it_starts_with_punctuation(tokenizers, family):
    tokenizer = tokenizers[family]
    template = Template.parse("{sent_0} It was{mask}.")
    demo_word = Block(template, ("Dull.",), label_word="terrible", is_demonstration=True)
    demo_punct = Block(template, ("Fine.",), label_word="!", is_demonstration=True)
    slot_text, slot_id = _slot(tokenizer)
    rendered = render_blocks([Block(template, ("Great.",)), demo_word, demo_punct], tokenizer, max_length=64,
                             slot_text=slot_text, mask_token_id=slot_id)
    assert rendered.text == f"Great. It was{slot_text}.Dull. It was terrible.Fine. It was!."


def test_label_variables_fill_in_demonstration_label_words(tokenizers):
    tokenizer = tokenizers["wordpiece"]
    template = Template.parse("*cls**label_0*_or*label_1*?*sent_0*_It_was*mask*.*sep+*")
    block = Block(template, ("Fine.",), demo_label_words=("terrible", "great"))
    rendered = render_blocks([block], tokenizer, max_length=64, slot_text="[MASK]", mask_token_id=tokenizer.mask_token_id)
    # As in LM-BFF, a label word is the word after a space (' ' + word).
    assert rendered.text == "[CLS] terrible or great?Fine. It was[MASK].[SEP]"
    with pytest.raises(UserError, match="label_1"):
        render_blocks([Block(template, ("Fine.",), demo_label_words=("terrible",))], tokenizer, max_length=64,
                      slot_text="[MASK]", mask_token_id=tokenizer.mask_token_id)


def test_a_sentence_that_contains_the_mask_text_is_rejected(tokenizers):
    tokenizer = tokenizers["wordpiece"]
    with pytest.raises(UserError, match="mask tokens"):
        _render(tokenizer, "*cls**sent_0*_It_was*mask*.*sep+*", ["A [MASK] movie."])


def test_template_needing_a_missing_sentence_is_rejected(tokenizers):
    with pytest.raises(UserError, match="uses sentence 1"):
        _render(tokenizers["wordpiece"], "*cls**sent_0**mask*,*+sentl_1**sep+*", ["Only one."])


def _template_pattern(template: Template, family: str, slot_text: str) -> re.Pattern:
    """A regex for the rendered text of a one-block prompt: template text and specials literally,
    each sentence as a (possibly empty) group."""
    pattern = ""
    for part in template.parts:
        if part.kind == "text":
            pattern += re.escape(part.text)
        elif part.kind == "mask":
            pattern += re.escape(slot_text)
        elif part.kind in ("cls", "sep", "sep+"):
            pattern += re.escape(_special("cls" if part.kind == "cls" else "sep", family))
        elif part.kind == "sent":
            pattern += (" ?" if part.space else "") + "(.*?)"
    return re.compile(pattern, re.DOTALL)


_word = st.sampled_from(sorted(FILLER_WORDS) + ["Wonderful", "zyx", "Qué", "ünïcode", "42", "x-y"])
_sentence = st.builds(lambda words, end: " ".join(words) + end, st.lists(_word, min_size=0, max_size=30),
                      st.sampled_from(["", ".", "!", "?"]))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("lmbff", [get_task("SST-2").template, get_task("RTE").template, get_task("TREC").template,
                                   "*cls**sent_0*_What_kind_of_question_is_this?*mask*_and*+sentl_1*.*sep+*"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=_sentence, second=_sentence, max_length=st.integers(4, 60), truncate_head=st.booleans())
def test_truncation_only_shortens_sentences(tokenizers, family, lmbff, first, second, max_length, truncate_head):
    tokenizer = tokenizers[family]
    template = Template.parse(lmbff)
    slot_text, slot_id = _slot(tokenizer)
    texts = (first, second)[:max(template.num_sentences, 1)] if template.num_sentences else (first,)
    try:
        rendered = _render(tokenizer, lmbff, texts, max_length=max_length, truncate_head=truncate_head)
    except UserError as error:
        assert "max_length" in str(error)
        # It only gives up when the template text with empty sentences does not fit either.
        empty = _render(tokenizer, lmbff, [""] * len(texts), max_length=10_000)
        assert len(empty.input_ids) > max_length
        return
    assert len(rendered.input_ids) <= max_length
    match = _template_pattern(template, family, slot_text).fullmatch(rendered.text)
    assert match is not None, rendered.text
    originals = [part.apply_to_sentence(texts[part.index]) for part in template.parts if part.kind == "sent"]
    for kept, original in zip(match.groups(), originals):
        if truncate_head:
            assert original.strip().endswith(kept.strip())
        else:
            assert original.strip().startswith(kept.strip())
    if not rendered.truncated:
        assert [kept.strip() for kept in match.groups()] == [o.strip() for o in originals]
    if slot_id is not None:
        assert rendered.input_ids.count(slot_id) == 1
        assert rendered.input_ids[rendered.mask_index] == slot_id


@pytest.mark.parametrize("family", FAMILIES)
def test_demonstrations_are_cut_before_the_query(tokenizers, family):
    tokenizer = tokenizers[family]
    query = "The film is a superb story of a man and his dog."
    long_demo = " ".join(["the long story of the old city"] * 8) + "."
    template = "*cls**sent_0*_It_was*mask*.*sep+*"
    full = _render(tokenizer, template, [query], demos=[[long_demo]], max_length=10_000)
    alone = _render(tokenizer, template, [query], max_length=10_000)
    budget = len(full.input_ids) - 10
    cut = _render(tokenizer, template, [query], demos=[[long_demo]], max_length=budget)
    assert cut.truncated and len(cut.input_ids) <= budget
    assert cut.text.startswith(alone.text)  # the query block is whole; only the demonstration shrank
    assert len(cut.text) < len(full.text)
    # With no room for any demonstration text the query is cut too, but the template text stays.
    tight = _render(tokenizer, template, [query], demos=[[long_demo]], max_length=len(alone.input_ids) - 2)
    assert " It was great." in tight.text and len(tight.input_ids) <= len(alone.input_ids) - 2
    assert query not in tight.text


def test_longest_sentence_is_cut_first(tokenizers):
    tokenizer = tokenizers["wordpiece"]
    short, long = "A good film.", " ".join(["the dog and the cat"] * 6) + "."
    full = _render(tokenizer, "*cls**sent_0**mask*,*+sentl_1**sep+*", [short, long], max_length=10_000)
    cut = _render(tokenizer, "*cls**sent_0**mask*,*+sentl_1**sep+*", [short, long], max_length=len(full.input_ids) - 5)
    assert cut.text.startswith("[CLS]A good film.[MASK], the dog")
    assert len(cut.input_ids) <= len(full.input_ids) - 5


@pytest.mark.parametrize("family", FAMILIES)
def test_a_template_that_cannot_fit_raises(tokenizers, family):
    with pytest.raises(UserError, match="max_length=3"):
        _render(tokenizers[family], "*cls**sent_0*_What_kind_of_question_is_this?*mask*.*sep+*", ["Hello there."],
                max_length=3)


def test_exactly_one_query_block_is_required(tokenizers):
    tokenizer = tokenizers["wordpiece"]
    template = Template.parse("{sent_0} It was{mask}.")
    with pytest.raises(UserError, match="exactly one block"):
        render_blocks([Block(template, ("a",)), Block(template, ("b",))], tokenizer, max_length=32, slot_text="[MASK]")
    with pytest.raises(UserError, match="exactly one block"):
        render_blocks([Block(template, ("a",), label_word="great")], tokenizer, max_length=32, slot_text="[MASK]")


# ---------------------------------------------------------------------------------------------
# Verbalizers


def test_verbalizer_parses_json_and_lmbff_literals():
    task = get_task("SST-2")
    from_json = Verbalizer.from_mapping(task, '{"0": "terrible", "1": "great"}')
    from_literal = Verbalizer.from_mapping(task, "{'0':'terrible','1':'great'}")
    from_ints = Verbalizer.from_mapping(task, "{0: 'terrible', 1: 'great'}")
    assert from_json == from_literal == from_ints == Verbalizer.for_task(task)
    assert from_json.words == ("terrible", "great")
    assert Verbalizer.from_mapping(task, from_json.to_json()) == from_json
    rte = Verbalizer.from_mapping(get_task("RTE"), "{'entailment':'Yes','not_entailment':'No'}")
    assert rte.words == ("No", "Yes")  # in the task's label order


def test_verbalizer_literal_is_never_evaluated():
    with pytest.raises(UserError, match="not a JSON object or a Python dict literal"):
        parse_mapping_text("{'0': __import__('os').getcwd(), '1': 'great'}")


@pytest.mark.parametrize("mapping, message", [
    ({"0": "terrible"}, "missing ['1']"),
    ({"0": "terrible", "1": "great", "2": "okay"}, "unknown ['2']"),
    ({"0": "great", "1": "great"}, "share a label word"),
    ({"0": "", "1": "great"}, "non-empty string"),
    ({"0": 3, "1": "great"}, "non-empty string"),
    ("['terrible', 'great']", "expected an object"),
    ("{'0': 'terrible', '1': ", "not a JSON object"),
])
def test_bad_verbalizers_raise_user_error(mapping, message):
    with pytest.raises(UserError, match=re.escape(message)):
        Verbalizer.from_mapping(get_task("SST-2"), mapping)


def test_mapping_file_names_the_bad_line(tmp_path):
    path = tmp_path / "mappings.txt"
    path.write_text("{'0':'terrible','1':'great'}\n{'0':'bad','1':'bad'}\n")
    with pytest.raises(UserError, match=r"mappings.txt, line 2: .*share a label word"):
        load_mapping_lines(path, get_task("SST-2"))
    path.write_text("{'0':'terrible','1':'great'}\t0.8\n{\"0\": \"bad\", \"1\": \"good\"}\n")
    assert [v.words for v in load_mapping_lines(path, get_task("SST-2"))] == [("terrible", "great"), ("bad", "good")]


def test_labelx_is_the_word_of_the_ith_demonstration_and_label_the_word_of_class_i(tiny_causal):
    """LM-BFF's two label variables: *labelx_0* follows the demonstrations' order, *label_0* is class 0's word."""
    from autoprompt_search.prompts import Verbalizer
    from autoprompt_search.tasks import Example, get_task

    task = get_task("sst2")
    verbalizer = Verbalizer.for_task(task)  # 0: terrible, 1: great
    template = Template.parse("*cls**sent_0*_It_was*mask*._first_shown:*labelx_0*._class_zero:*label_0*.*sep+*")
    demos = [(Example(("a fine film",), "1"), 1), (Example(("a dull film",), "0"), 0)]
    encoded = tiny_causal.encode(Example(("the query",)), template, verbalizer, demos, max_length=200)
    assert "first shown: great." in encoded.text and "class zero: terrible." in encoded.text
    assert "first shown: terrible." not in encoded.text
    swapped = tiny_causal.encode(Example(("the query",)), template, verbalizer, demos[::-1], max_length=200)
    assert "first shown: terrible." in swapped.text
