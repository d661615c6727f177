"""The project's own family data: deterministic, split by template, every attack family twinned."""

from __future__ import annotations

from collections import Counter

from edgebox.models.training.families import (
    ATTACK_FAMILIES,
    GOALS,
    all_examples,
    family_of,
    family_split,
    is_held_out,
)


def test_split_is_deterministic_and_disjoint() -> None:
    train, held = family_split()
    again_train, again_held = family_split()
    assert [e.text for e in train] == [e.text for e in again_train]
    assert [e.text for e in held] == [e.text for e in again_held]
    assert not {e.text for e in train} & {e.text for e in held}


def test_held_out_templates_use_only_held_out_goals() -> None:
    train, held = family_split()
    held_goals = {g for i, g in enumerate(GOALS) if is_held_out(i)}
    train_goals = set(GOALS) - held_goals
    for ex in train:
        assert not any(g in ex.text for g in held_goals), ex.subset
    assert any(any(g in ex.text for g in held_goals) for ex in held)
    assert not any(any(g in ex.text for g in train_goals) for ex in held if ex.subset in ATTACK_FAMILIES)


def test_every_family_has_attacks_and_benign_twins_on_both_sides() -> None:
    train, held = family_split()
    for side in (train, held):
        counts = Counter((family_of(e), e.label) for e in side)
        for family in ATTACK_FAMILIES:
            assert counts[(family, 1)] > 0 and counts[(f"{family}_benign", 0)] > 0, family
        for family in ("mentions_jailbreak", "benign_base64", "password_questions", "assistant_questions"):
            assert counts[(family, 0)] > 0, family
        assert counts[("non_english", 1)] > 0 and counts[("obfuscation", 1)] > 0
    languages = {e.subset.split(":")[1] for _, e in all_examples() if ":" in e.subset}
    assert len(languages) >= 15
