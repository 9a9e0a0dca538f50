"""The KIS client's pure parts: no server needed."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from kis import errors, protocol
from kis.client import lower_keys
from kis.config import AppCredentials, KisConfig
from kis.crypto import aes_decrypt, aes_encrypt
from kis.protocol import Flavour
from kis.ws import notice_from, trade_from

KEY = "k" * 32
IV = "i" * 16


def test_paper_tr_ids_replace_the_leading_letter():
    assert protocol.tr_id("TTTC0012U", Flavour.PAPER) == "VTTC0012U"
    assert protocol.tr_id("TTTC8434R", Flavour.PAPER) == "VTTC8434R"
    assert protocol.tr_id("FHKST01010100", Flavour.PAPER) == "FHKST01010100"
    assert protocol.tr_id("TTTC0012U", Flavour.REAL) == "TTTC0012U"


def test_keys_are_read_case_insensitively():
    raw = {
        "RT_CD": "0",
        "Output": {"ODNO": "1", "Krx_Fwdg_Ord_Orgno": "06010"},
        "output1": [{"PDNO": "005930"}],
    }
    assert lower_keys(raw) == {
        "rt_cd": "0",
        "output": {"odno": "1", "krx_fwdg_ord_orgno": "06010"},
        "output1": [{"pdno": "005930"}],
    }


@given(st.text(min_size=0, max_size=300))
def test_aes_round_trip(text):
    assert aes_decrypt(aes_encrypt(text, key=KEY, iv=IV), key=KEY, iv=IV) == text


def test_frames_split_into_named_records():
    records = [
        dict.fromkeys(protocol.TRADE_FIELDS, "0")
        | {"MKSC_SHRN_ISCD": s, "STCK_PRPR": p, "STCK_CNTG_HOUR": "090000", "BSOP_DATE": ""}
        for s, p in (("005930", "71000"), ("000660", "120500"))
    ]
    raw = f"0|H0STCNT0|002|{protocol.join_records(records, protocol.TRADE_FIELDS)}"
    encrypted, tr_id, count, payload = protocol.split_frame(raw)
    assert (encrypted, tr_id, count) == (False, "H0STCNT0", 2)
    ticks = [trade_from(r) for r in protocol.split_records(payload, protocol.TRADE_FIELDS, count)]
    assert [(t.symbol, t.price) for t in ticks] == [("005930", 71000), ("000660", 120500)]
    assert protocol.split_frame('{"header": {"tr_id": "PINGPONG"}}') is None
    with pytest.raises(ValueError):
        protocol.split_records("a^b", protocol.TRADE_FIELDS, 1)


def test_notice_fields():
    record = dict.fromkeys(protocol.NOTICE_FIELDS, "") | {
        "ODER_NO": "0000000123",
        "SELN_BYOV_CLS": "01",
        "STCK_SHRN_ISCD": "005930",
        "CNTG_QTY": "3",
        "CNTG_UNPR": "71200",
        "CNTG_YN": "2",
        "RFUS_YN": "0",
        "ODER_QTY": "5",
        "ODER_PRC": "71500",
    }
    notice = notice_from(record)
    assert (notice.side, notice.qty, notice.price, notice.is_fill, notice.order_qty) == (
        "SELL",
        3,
        71200,
        True,
        5,
    )


def test_credentials_never_print_their_secret():
    app = AppCredentials("PSabcdefAPPKEY1234567890", "SECRETsecretSECRET+/=")
    config = KisConfig(
        flavour=Flavour.PAPER,
        base_url="http://127.0.0.1:1",
        ws_url="ws://x",
        cano="12345678",
        acnt_prdt_cd="01",
        query_app=app,
        order_app=app,
    )
    for text in (repr(app), str(app), repr(config), f"{config}"):
        assert "SECRET" not in text and "APPKEY" not in text
    assert app.fingerprint in repr(config)


@pytest.mark.parametrize(
    "msg_cd, status, order, cls",
    [
        ("EGW00201", 500, False, errors.KisRateLimited),
        ("EGW00215", 500, False, errors.KisRateLimited),
        ("EGW00133", 403, False, errors.KisTokenRateLimited),
        ("EGW00123", 500, False, errors.KisTokenExpired),
        ("EGW00121", 500, False, errors.KisTokenInvalid),
        ("APBK0918", 200, True, errors.KisOrderRefused),  # the text decides: see below
        ("APBK0656", 200, True, errors.KisProductNotFound),
        ("APBK9901", 200, True, errors.KisOrderRefused),
        ("APBK9999", 200, False, errors.KisError),
        ("", 503, False, errors.KisUnavailable),
        # An order write: only the documented refusals below HTTP 500 and the gateway's own
        # refusals say it did not go out; anything else is an unknown outcome, settled.
        ("EGW00201", 500, True, errors.KisRateLimited),
        ("APBK9999", 200, True, errors.KisAmbiguousOutcome),  # a code nobody documented
        ("APBK0919", 500, True, errors.KisAmbiguousOutcome),  # a 5xx with a KIS body
        ("APBK9902", 502, True, errors.KisAmbiguousOutcome),
        ("", 503, True, errors.KisAmbiguousOutcome),
    ],
)
def test_kis_codes_map_to_typed_errors(msg_cd, status, order, cls):
    error = errors.error_for(msg_cd=msg_cd, msg1="text", http_status=status, tr_id="T", order=order)
    assert type(error) is cls and (msg_cd in str(error) if msg_cd else True)


@pytest.mark.parametrize(
    "msg_cd, msg1, status, cls",
    [
        ("APBK0918", "장운영시간이 아닙니다.(주문불가)", 200, errors.KisMarketClosed),
        (
            "APBK0918",
            "장운영시간이 아닙니다.(장종료동시마감(129) 주문불가시간)",
            200,
            errors.KisMarketClosed,
        ),
        ("APBK0919", "장운영일자가 주문일과 상이합니다", 200, errors.KisMarketClosed),
        # The same code seen on another refusal: a refusal, not the market's hours.
        ("APBK0918", "주문가능금액을 초과 했습니다", 200, errors.KisOrderRefused),
        # The paper system's texts, with a code nobody documented.
        ("40570000", "모의투자 장종료 입니다.", 200, errors.KisMarketClosed),
        ("40580000", "모의투자 장시작전 입니다.", 200, errors.KisMarketClosed),
        ("APBK0918", "장운영시간이 아닙니다.", 500, errors.KisAmbiguousOutcome),  # 5xx: unknown
    ],
)
def test_a_refusal_for_market_hours_is_known_by_its_text(msg_cd, msg1, status, cls):
    error = errors.error_for(msg_cd=msg_cd, msg1=msg1, http_status=status, tr_id="T", order=True)
    assert type(error) is cls


@pytest.mark.parametrize(
    "kis, message",
    [
        ({"ENV": "live"}, "KIS_ENV"),
        ({"ENV": "simulator", "BASE_URL": ""}, "KIS_BASE_URL"),
        ({"ACCOUNT": "1234-1"}, "KIS_ACCOUNT"),
        ({"QUERY_APP_KEY": ""}, "KIS_QUERY_APP_KEY"),
    ],
)
def test_bad_kis_settings_are_refused_clearly(kis, message):
    base = {
        "ENV": "paper",
        "BASE_URL": "",
        "WS_URL": "",
        "ACCOUNT": "12345678-01",
        "QUERY_APP_KEY": "a",
        "QUERY_APP_SECRET": "b",
        "ORDER_APP_KEY": "",
        "ORDER_APP_SECRET": "",
        "HTS_ID": "",
    }
    with override_settings(KIS=base | kis), pytest.raises(ImproperlyConfigured, match=message):
        KisConfig.from_settings()


def test_every_refusal_the_simulator_sends_is_a_documented_refusal():
    """The simulator stands in for KIS: each order refusal it can send must reject the order,
    not leave it unknown (and protocol.ORDER_REFUSALS holds nothing it never refuses with)."""
    from kis import protocol
    from kis_simulator import engine

    sent = {
        value
        for name, value in vars(engine).items()
        if name.startswith("MSG_") and name not in ("MSG_ORDER_SENT",) and isinstance(value, str)
    }
    assert sent <= protocol.ORDER_REFUSALS | {protocol.MSG_ORDER_SENT}
    assert protocol.ORDER_REFUSALS.isdisjoint(protocol.GATEWAY_NOT_PROCESSED)
