"""What the admin tests share: provider credentials with real keys, and the POST data an
admin change page would submit as it stands."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def p8_key() -> str:
    """What Apple's .p8 file holds: a P-256 private key in PKCS#8 PEM."""
    return pem(ec.generate_private_key(ec.SECP256R1()))


def rsa_key() -> str:
    return pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def service_account(project_id: str = "signal-admin", private_key: str | None = None) -> dict:
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": "4f1c2b9e0d",
        "private_key": private_key or rsa_key(),
        "client_email": f"sender@{project_id}.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "http://127.0.0.1:8089/token",
    }


def pem_body_lines(key: str) -> list[str]:
    """The base64 lines of a PEM key: any one of them on a page is a leak."""
    return [line for line in key.splitlines() if line and not line.startswith("-----")]


def page_data(response) -> dict:
    """The POST data of an admin change page as it was rendered: the form's values and every
    inline formset's management form and forms."""
    assert response.status_code == 200, response.content[:500]
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        forms += [inline.formset.management_form, *inline.formset.forms]
    data = {}
    for form in forms:
        for name in form.fields:
            value = form[name].value()
            if value is None or value is False:
                continue
            data[form.add_prefix(name)] = "on" if value is True else value
    return data
