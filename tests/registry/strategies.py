"""Hypothesis strategies for the registry tests, kept in one module."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from registry import Relationship

relationships = st.sampled_from(list(Relationship))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["code", "target", "element", "group", "relationship",
                                      "equivalence", "url", "version", "status", "concept",
                                      "extension", "valueString", "dependsOn", "unmapped",
                                      "mode", "source", "display", "attribute", "value"]),
                      children, max_size=5),
    max_leaves=20,
)


@st.composite
def fhir_like_documents(draw: st.DrawFn) -> bytes:
    """JSON documents shaped roughly like CodeSystem or ConceptMap, often broken."""
    body = draw(st.dictionaries(st.sampled_from(
        ["url", "version", "status", "group", "concept", "extension", "sourceScopeUri",
         "targetScopeUri", "sourceUri", "effectivePeriod"]), json_values, max_size=6))
    body["resourceType"] = draw(st.sampled_from(["ConceptMap", "CodeSystem", "Patient"]))
    return json.dumps(body).encode()


@st.composite
def invertible_rows(draw: st.DrawFn) -> list[tuple[str, str, Relationship]]:
    """Distinct (source, target, relationship) rows between codes a0..a5 and b0..b5."""
    pairs = draw(st.sets(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1,
                         max_size=12))
    return [(f"a{s}", f"b{t}", draw(relationships)) for s, t in sorted(pairs)]
