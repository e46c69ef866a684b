"""Erasure of the caller's own patient account (the right to be forgotten)."""

from __future__ import annotations

from flask import Response, current_app
from flask_restx import Namespace, Resource

from api.auth import current_principal, require_auth
from api.contract import Reply, operation
from api.db import commits_are_durable, get_db
from api.http import empty_response, load_body
from models.accounts import Role
from models.erasure import erase_patient, scrub_sqlite_files
from schemas.erasure import AccountEraseIn

# Its own namespace on /me: the profile's GET and PATCH live in api.resources.accounts.
ns = Namespace("erasure", path="/me", description="Erasing one's own account")
_erase_in = AccountEraseIn()


@ns.route("")
class MyAccountErasure(Resource):
    @require_auth(Role.patient)
    @operation(
        operation_id="eraseMe",
        tag="me",
        replies=[
            Reply(204, "Erased."),
        ],
        problems=(400, 401, 403, 413, 415, 422, 429, 500),
        body=AccountEraseIn,
    )
    def delete(self) -> Response:
        """Erase my account and all my data

        Patient only (clinicians and admins 403: their accounts are disabled by an admin,
        since records they wrote belong to their patients). Confirm with the account's
        password; a wrong one is 422 on `password` (like `current_password` of
        `POST /api/v1/me/password`), and password checks are rate-limited per user (429).

        In one transaction the account and everything about the patient are deleted for
        good: mood entries and their earlier versions, questionnaires and their versions,
        sessions and their observations, alerts, the sync counter, care links, invite codes
        the patient spent, every session (refresh-token family) and the idempotency keys
        stored with the records. The access token used for this call, and every other
        token of the patient, is refused (401) from the next request on, because its user
        no longer exists. The audit trail is kept, but the patient in it becomes a
        pseudonym that nothing links back to them. There is no undo; export first
        (`GET /api/v1/me/export`) to keep a copy.

        Nothing is left in the database files: SQLite runs with `secure_delete` (deleted
        rows are overwritten with zeros) and the write-ahead log is checkpointed and
        truncated right after the commit. On PostgreSQL the rows are deleted at once and the
        space they took is reclaimed by VACUUM (autovacuum, or a scheduled
        `VACUUM (FULL)`); backups age out with their retention period.

        No `If-Match`: it guards against overwriting a version one has not seen, but erasure
        replaces no version, so no concurrent change can make it wrong; the password is
        the confirmation of intent.
        """
        data = load_body(_erase_in)
        services = current_app.extensions["moodtrack"]
        db = get_db()
        erase_patient(
            db=db,
            passwords=services.passwords,
            user=current_principal().user,
            password=data["password"],
        )
        db.commit()
        # Only once the commit is durable is there anything to scrub; a session joined to an
        # outer transaction (the test suite) has not committed, and would only wait on it.
        if commits_are_durable():
            scrub_sqlite_files(services.engine)
        return empty_response()
