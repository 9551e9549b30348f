"""The on-call API: people, schedules, overrides and routes over HTTP (admin scope, audited as
the key, 422 naming the field, 404/409), and who is on call at an instant (read scope)."""

from __future__ import annotations

import httpx
from sqlalchemy import Engine, insert, select

from monitoring_core.schema import audit_log, users


def _people(engine: Engine) -> dict[str, int]:
    with engine.begin() as conn:
        return {
            name: int(
                conn.execute(
                    insert(users)
                    .values(username=name, password_hash="x", role="responder")
                    .returning(users.c.id)
                ).scalar_one()
            )  # fmt: skip
            for name in ("ann", "ben")
        }


def test_it_runs_a_rota_through_the_api(api_server: str, admin_key: str, engine: Engine) -> None:
    ids = _people(engine)
    auth = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=api_server, headers=auth, timeout=30) as api:
        layer = {"rotation": "weekly", "handoff_weekday": 5, "handoff_time": "10:00",
                 "starts_on": "2026-06-06", "members": [ids["ann"], ids["ben"]]}  # fmt: skip
        made = api.post("/api/admin/oncall/schedules", json={"name": "Primary", "layers": [layer]})
        assert made.status_code == 201, made.text
        sid = made.json()["id"]
        contact = api.post(f"/api/admin/oncall/people/{ids['ben']}/contacts",
                           json={"label": "hook", "url": "json://127.0.0.1:9/tok3n"})  # fmt: skip
        assert contact.status_code == 201 and "tok3n" not in contact.text
        saturday = {"at": "2026-06-13T10:30:00+01:00"}
        (answer,) = api.get("/api/monitoring/oncall", params=saturday).json()["schedules"]
        assert answer["now"]["username"] == "ben" and answer["next"]["username"] == "ann"
        override = api.post(f"/api/admin/oncall/schedules/{sid}/overrides", json={
            "user_id": ids["ann"], "starts_at": "2026-06-13T09:00:00Z",
            "ends_at": "2026-06-13T18:00:00Z", "reason": "swap"})  # fmt: skip
        assert override.status_code == 201, override.text
        (answer,) = api.get("/api/monitoring/oncall", params=saturday).json()["schedules"]
        assert (answer["now"]["username"], answer["now"]["source"]) == ("ann", "override")
        shifts = api.get(f"/api/admin/oncall/schedules/{sid}/shifts",
                         params={"from": "2026-06-13T00:00:00Z", "to": "2026-06-14T00:00:00Z"})  # fmt: skip
        assert [s["username"] for s in shifts.json()["shifts"]] == ["ann", "ben"]
        route = api.put("/api/admin/oncall/routes/high", json={"targets": {"schedules": [sid]}})
        assert route.status_code == 200, route.text
        assert api.delete(f"/api/admin/oncall/schedules/{sid}").status_code == 409  # routed
        assert api.delete("/api/admin/oncall/routes/high").status_code == 204
        assert api.delete(f"/api/admin/oncall/schedules/{sid}").status_code == 204
        assert api.delete(f"/api/admin/oncall/schedules/{sid}").status_code == 404
    with engine.connect() as conn:
        actions = list(conn.execute(select(audit_log.c.action, audit_log.c.actor)))
    assert ("schedule.override_add", "apikey:test-admin") in actions
    assert ("schedule.delete", "apikey:test-admin") in actions


def test_it_names_the_bad_field(api_server: str, admin_key: str, engine: Engine) -> None:
    ids = _people(engine)
    auth = {"Authorization": f"Bearer {admin_key}"}
    bad = [
        ("post", "/api/admin/oncall/schedules", {"name": "X", "layers": []}, "layers"),
        ("post", "/api/admin/oncall/schedules",
         {"name": "X", "layers": [{"starts_on": "2026-01-01", "members": [ids["ann"]],
                                   "handoff_weekday": 9}]}, "layers[0].handoff_weekday"),
        ("put", f"/api/admin/oncall/people/{ids['ann']}/time_zone", {"time_zone": "Nowhere/X"},
         "time_zone"),
        ("post", f"/api/admin/oncall/people/{ids['ann']}/contacts", {"url": "nope://"}, "url"),
        ("put", "/api/admin/oncall/routes/high", {"targets": {}}, "targets"),
        ("put", "/api/admin/oncall/routes/high", {"targets": {"users": [999]}}, "targets.users"),
    ]  # fmt: skip
    with httpx.Client(base_url=api_server, headers=auth, timeout=30) as api:
        for method, path, body, field in bad:
            reply = api.request(method, path, json=body)
            assert reply.status_code == 422, (path, reply.text)
            assert reply.json()["detail"][0]["field"] == field, reply.text
        assert api.get("/api/monitoring/oncall", params={"at": "Saturday"}).status_code == 422
        assert api.put("/api/admin/oncall/routes/urgent", json={}).status_code == 422
        assert api.get("/api/admin/oncall/schedules/99/shifts").status_code == 404


def test_it_needs_an_admin_key_to_change_and_a_read_key_to_ask(
    api_server: str, ingest_key: str
) -> None:
    auth = {"Authorization": f"Bearer {ingest_key}"}
    with httpx.Client(base_url=api_server, headers=auth, timeout=30) as api:
        assert api.get("/api/admin/oncall/schedules").status_code == 403
        assert api.get("/api/monitoring/oncall").status_code == 403
    assert httpx.get(f"{api_server}/api/monitoring/oncall", timeout=30).status_code == 401
