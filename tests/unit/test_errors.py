"""errors.translate: every driver failure becomes an astro_db error, the original kept as __cause__."""

from __future__ import annotations

import pytest
from bson.errors import InvalidDocument
from pymongo import errors as pm

from astro_db import errors


def test_hierarchy():
    assert issubclass(errors.NotConnectedError, errors.DatabaseConnectionError)
    assert issubclass(errors.TransactionNotSupportedError, errors.TransactionError)
    assert issubclass(errors.BackupIntegrityError, errors.BackupError)
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Warning):
            assert issubclass(obj, errors.AstroDBWarning)  # warnings have a tree of their own
        elif isinstance(obj, type):
            assert issubclass(obj, errors.AstroDBError)
    assert issubclass(errors.EmbeddedDatabaseWarning, errors.AstroDBWarning)
    assert issubclass(errors.AstroDBWarning, UserWarning)


def test_validation_error_keeps_field_messages():
    exc = errors.ValidationError(errors={"energyLevel": "must be 0-100, got 150"})
    assert exc.errors == {"energyLevel": "must be 0-100, got 150"}
    assert "energyLevel: must be 0-100, got 150" in str(exc)


@pytest.mark.parametrize(
    "driver_exc, expected",
    [
        (pm.ServerSelectionTimeoutError("no servers"), errors.DatabaseConnectionError),
        (pm.AutoReconnect("connection reset"), errors.DatabaseConnectionError),
        (pm.NetworkTimeout("timed out"), errors.OperationTimeoutError),
        (pm.ExecutionTimeout("MaxTimeMSExpired", 50), errors.OperationTimeoutError),
        (pm.WaitQueueTimeoutError("pool"), errors.PoolExhaustedError),
        (pm.OperationFailure("Transaction numbers are only allowed on a replica set member or mongos", 20),
         errors.TransactionNotSupportedError),
        (pm.OperationFailure("WriteConflict", 112), errors.TransactionError),
        (pm.OperationFailure("not authorized", 13), errors.PermissionDeniedError),
        (pm.OperationFailure("bad", 2), errors.QueryError),
        (pm.ConfigurationError("bad option"), errors.ConfigError),
        (InvalidDocument("too large"), errors.ValidationError),
    ],
)
def test_translate_maps_driver_errors(driver_exc, expected):
    out = errors.translate(driver_exc, operation="find", model="User")
    assert type(out) is expected
    assert "find on User" in str(out) or expected in (errors.ValidationError,) or expected is errors.ConfigError


def test_code_20_says_a_replica_set_is_needed():
    out = errors.translate(pm.OperationFailure("Transaction numbers are only allowed on a replica set member or mongos", 20))
    assert "replica set" in str(out)


def test_duplicate_key_names_the_fields():
    dup = pm.DuplicateKeyError("E11000 duplicate key", 11000,
                               {"keyPattern": {"email": 1}, "keyValue": {"email": "a@b.co"}})
    out = errors.translate(dup, operation="create", model="User")
    assert isinstance(out, errors.DuplicateKeyError)
    assert out.fields == ("email",)
    assert "a@b.co" not in str(out)


def test_duplicate_key_falls_back_to_the_index_name():
    dup = pm.DuplicateKeyError("E11000 duplicate key error collection: astro.planetaryInsights index: userId_1_date_1 dup key: {...}",
                               11000, {"errmsg": "E11000 duplicate key error collection: astro.planetaryInsights index: userId_1_date_1 dup key"})
    assert errors.translate(dup).fields == ("userId", "date")


def test_passwords_are_scrubbed_from_driver_messages():
    out = errors.translate(pm.ConnectionFailure("cannot reach mongodb://u:hunter2@h:1/db"))
    assert "hunter2" not in str(out)


def test_astro_errors_pass_through_unchanged():
    exc = errors.QueryError("x")
    assert errors.translate(exc) is exc


def test_unknown_exceptions_become_the_base_class():
    out = errors.translate(RuntimeError("boom"))
    assert type(out) is errors.AstroDBError and "RuntimeError" in str(out)
