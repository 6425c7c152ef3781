"""A person's erasure shreds the data key of every referral intake that named them, not only
the one that made them a prospect (prospecting shreds that one). A person referred again, by
the same client or another, has an intake per referral, each holding their name, email and phone
as the client typed them, encrypted with that referral's key: one left unshredded kept them
readable in every copy of its history (Temporal's backups, an export)."""

from __future__ import annotations

import pytest
from temporalio.api.common.v1 import Payload

from services.referrals.models import Referral
from shared.codec import (
    EncryptionCodec,
    KeyRing,
    PayloadKeyErased,
    new_master_key,
    parse_master_keys,
    referral_scope,
)
from shared.erasure import ErasureOrder
from tests.support.apps import Api, ServiceApp
from tests.support.referrals import an_ask
from tests.support.settings import SERVICE_AUTH


async def test_an_erasure_shreds_the_key_of_every_intake_that_named_the_person(
    service_app: ServiceApp, api: Api, database_urls: dict[str, str]
) -> None:
    keys = new_master_key("k1")
    await service_app("prospecting", payload_master_keys=keys)  # the keyring's table
    app = await service_app("referrals", payload_master_keys=keys)
    async with app.state.sessions() as session:
        session.add(an_ask(client_prospect_id="p-ada", client_name="Ada"))
        await session.flush()
        # the referral that made Grace a prospect, a second one naming her (linked to the same
        # prospect: a known person is never copied), and one naming someone else
        for rid, email, prospect in (
            ("r-first", "grace@example.com", "p-grace"),
            ("r-again", "grace@example.com", "p-grace"),
            ("r-alan", "alan@example.com", "p-alan"),
        ):
            session.add(
                Referral(
                    id=rid, ask_id="ask1", referrer_prospect_id="p-ada", first_name="G",
                    email=email, prospect_id=prospect, status="linked",
                )
            )  # fmt: skip
        await session.commit()
    ring = KeyRing(parse_master_keys([keys]), database_urls["prospecting"])
    inputs = {
        rid: await EncryptionCodec(ring, referral_scope(rid)).encode([Payload(data=rid.encode())])
        for rid in ("r-first", "r-again", "r-alan")
    }

    order = ErasureOrder(erasure_id="e-grace", prospect_id="p-grace", email="grace@example.com")
    http = await api(app)
    erased = await http.post(
        "/internal/erasures", json=order.model_dump(mode="json"), headers=SERVICE_AUTH
    )
    assert erased.status_code == 200, erased.text

    fresh = KeyRing(parse_master_keys([keys]), database_urls["prospecting"])
    for rid in ("r-first", "r-again"):
        with pytest.raises(PayloadKeyErased):
            await EncryptionCodec(fresh).decode(inputs[rid])
    # another person's intake stays readable
    assert [p.data for p in await EncryptionCodec(fresh).decode(inputs["r-alan"])] == [b"r-alan"]
    for keyring in (ring, fresh):
        await keyring.aclose()
