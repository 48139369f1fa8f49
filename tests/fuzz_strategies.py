"""Hypothesis strategies the fuzz tests share: numbers as text, and XML shaped like a callback's."""
from __future__ import annotations

from hypothesis import strategies as st

#: Integers far past any field's range, and long runs of digits, as text.
numbers = st.one_of(st.integers(min_value=-10**400, max_value=10**400).map(str), st.text("0123456789", max_size=450))

WRAPPERS = ["<xml>{}</xml>", "<xml>{}", "{}", "<other>{}</other>", "<xml a='1'>{}</xml>"]


@st.composite
def xml_documents(draw, names: list[str], values: st.SearchStrategy[str], max_depth: int, max_fields: int,
                  wrappers: list[str] = WRAPPERS) -> str:
    """XML with elements named from ``names``, nested up to ``max_depth``, holding ``values`` plain, in CDATA or empty."""
    def element(depth: int) -> str:
        name = draw(st.sampled_from(names))
        if depth < max_depth and draw(st.booleans()):
            inner = "".join(element(depth + 1) for _ in range(draw(st.integers(0, 3))))
        else:
            value = draw(values)
            escaped = value.replace("&", "&amp;").replace("<", "&lt;")
            inner = draw(st.sampled_from([f"<![CDATA[{value}]]>", escaped, ""]))
        return f"<{name}>{inner}</{name}>"

    fields = "".join(element(1) for _ in range(draw(st.integers(0, max_fields))))
    return draw(st.sampled_from(wrappers)).format(fields)
