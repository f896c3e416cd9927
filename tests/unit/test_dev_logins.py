"""`mesh dev` gives a role its own SASL login when one is set (a cluster with per-component
ACLs), and the settings' login to every other role."""

from __future__ import annotations

from pydantic import SecretStr

from mesh.dev import DevMesh, DevOptions
from mesh.settings import Settings


def test_a_role_with_a_login_runs_under_it_and_the_others_keep_the_settings() -> None:
    settings = Settings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="admin",
        sasl_password="admin-secret",
    )
    logins = {"planner": ("mesh-planner", SecretStr("planner-secret"))}
    mesh = DevMesh(settings, DevOptions(logins=logins))
    planner = mesh.env_of("planner")
    assert (planner["MESH_SASL_USERNAME"], planner["MESH_SASL_PASSWORD"]) == (
        "mesh-planner",
        "planner-secret",
    )
    assert planner["MESH_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    workflows = mesh.env_of("workflows")
    assert (workflows["MESH_SASL_USERNAME"], workflows["MESH_SASL_PASSWORD"]) == (
        "admin",
        "admin-secret",
    )
