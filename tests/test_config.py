"""Settings checked together, and the ledger's rule defaults agreeing with the settings' (one place)."""

from __future__ import annotations

import dataclasses

import pytest

from gtracd.config import Settings
from gtracd.control.replica import rule_params
from gtracd.errors import UserError
from gtracd.ledger import RuleParams


def test_the_rules_defaults_are_the_settings_defaults():
    assert RuleParams() == rule_params(Settings())


def test_a_newcomer_budget_that_could_push_a_new_worker_below_the_floor_is_refused_at_start():
    Settings().validate()  # the defaults hold together
    with pytest.raises(UserError, match="newcomer_budget 0.02 must be below initial_trust - trust_floor"):
        Settings(newcomer_budget=0.02).validate()  # the old default: 0.97 - 0.96 = 0.01 < 0.02
    with pytest.raises(UserError, match="below initial_trust - trust_floor"):
        Settings(initial_trust=0.98, trust_floor=0.96, newcomer_budget=0.02).validate()  # equal to the margin
    Settings(initial_trust=0.99, trust_floor=0.96, newcomer_budget=0.02).validate()
    # newcomers below the floor are never routed: there is no margin to protect
    Settings(initial_trust=0.5, trust_floor=0.96, newcomer_budget=0.02).validate()
    with pytest.raises(UserError, match="newcomer_budget must be >= 0"):
        dataclasses.replace(Settings(), newcomer_budget=-0.1).validate()
