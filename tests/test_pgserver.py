import sqlalchemy as sa

from cohorts.db import Database


def test_cdm_url_is_usable(cdm_url: str) -> None:
    db = Database(cdm_url, must_exist=False)
    with db.connect() as conn:
        assert conn.execute(sa.text("SELECT 1 + 1")).scalar() == 2
    db.dispose()
