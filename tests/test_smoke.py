from tests.conftest import auth, register_patient


def test_register_login_me(client):
    patient = register_patient(client)
    headers = auth(client, patient["email"])
    response = client.get("/api/v1/me", headers=headers)
    assert response.status_code == 200
    assert response.get_json()["email"] == patient["email"]
