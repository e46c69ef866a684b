"""Erasure of the caller's own patient account (the right to be forgotten)."""

from __future__ import annotations

from flask import Response, current_app
from flask_restx import Namespace, Resource

from api.auth import current_principal, require_auth
from api.db import get_db
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
    def delete(self) -> Response:
        """Erase the calling patient and all their data for good (password confirms)."""
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
        if db.get_bind() is services.engine:
            scrub_sqlite_files(services.engine)
        return empty_response()
