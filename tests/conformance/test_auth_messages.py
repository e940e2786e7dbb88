"""Every vendor's refusal of the credentials says which to check and where each came from (issue 21, item 5)."""

from __future__ import annotations

from typing import Any

import labelport as lp
import pytest


def credential_names(sb: Any) -> list[str]:
    return list(sb.client().capabilities["credentials"])


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No LABELPORT_ variable of the machine's own (a profile, a key) reaches these clients."""
    import os

    for var in [v for v in os.environ if v.startswith("LABELPORT_")]:
        monkeypatch.delenv(var)
    return monkeypatch


def refusal(client: lp.Client) -> lp.AuthError:
    # create_batch asks the vendor on every vendor (Deepen's reservation checks its datasets, Sama its tasks).
    with pytest.raises(lp.AuthError) as info:
        client.create_batch("auth-check")
    return info.value


@pytest.mark.parametrize("vendor", lp.vendors())
def test_a_refused_credential_given_as_an_argument_names_the_argument(vendor: str) -> None:
    with lp.sandbox.start(vendor, seed=3) as sb:
        wrong = {name: f"wrong-{name}-7c1e" for name in credential_names(sb)}
        error = refusal(lp.Client(vendor, base_url=sb.url, project=sb.project, **wrong))
    message = str(error)
    for name in wrong:
        assert f"{name} (from the {name}= argument)" in message, message
        assert wrong[name] not in message and wrong[name] not in repr(error)


@pytest.mark.parametrize("vendor", lp.vendors())
def test_a_refused_credential_from_the_environment_names_the_variable(
    vendor: str, clean_env: pytest.MonkeyPatch
) -> None:
    with lp.sandbox.start(vendor, seed=3) as sb:
        variables = {name: f"LABELPORT_{vendor.upper()}_{name.upper()}" for name in credential_names(sb)}
        for name, var in variables.items():
            clean_env.setenv(var, f"wrong-{name}-7c1e")
        error = refusal(lp.Client(vendor, base_url=sb.url, project=sb.project))
    message = str(error)
    for name, var in variables.items():
        assert f"{name} (from the environment variable {var})" in message, message
        assert f"wrong-{name}-7c1e" not in message
