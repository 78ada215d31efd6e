"""The rule book's version row and the triggers that raise it."""

from django.db import migrations, models

# Statement-level triggers (one bump per statement, whatever the rows): any insert, delete or truncate of the rules
# or their destination links, and any update of a column the rule book reads, except the evaluator's own columns
# (state, last_fired_ms, suppressed), which it writes in every batch.
BUMP = """
CREATE SEQUENCE alerts_rule_book_version;
CREATE FUNCTION alerts_bump_rule_book() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A value never seen before, even after the table was emptied (a test's flush): a sequence no TRUNCATE resets.
    INSERT INTO alerts_rulebookversion (id, version) VALUES (1, nextval('alerts_rule_book_version'))
    ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version;
    RETURN NULL;
END $$;
CREATE TRIGGER alerts_rule_changed
    AFTER INSERT OR DELETE OR UPDATE OF owner_id, kind, exchange, symbol, params, channels, cooldown_s, active
    ON alerts_alertrule FOR EACH STATEMENT EXECUTE FUNCTION alerts_bump_rule_book();
CREATE TRIGGER alerts_rule_truncated
    AFTER TRUNCATE ON alerts_alertrule FOR EACH STATEMENT EXECUTE FUNCTION alerts_bump_rule_book();
CREATE TRIGGER alerts_rule_destinations_changed
    AFTER INSERT OR DELETE OR UPDATE ON alerts_alertrule_destinations
    FOR EACH STATEMENT EXECUTE FUNCTION alerts_bump_rule_book();
CREATE TRIGGER alerts_rule_destinations_truncated
    AFTER TRUNCATE ON alerts_alertrule_destinations FOR EACH STATEMENT EXECUTE FUNCTION alerts_bump_rule_book();
"""

UNBUMP = """
DROP TRIGGER alerts_rule_destinations_truncated ON alerts_alertrule_destinations;
DROP TRIGGER alerts_rule_destinations_changed ON alerts_alertrule_destinations;
DROP TRIGGER alerts_rule_truncated ON alerts_alertrule;
DROP TRIGGER alerts_rule_changed ON alerts_alertrule;
DROP FUNCTION alerts_bump_rule_book();
DROP SEQUENCE alerts_rule_book_version;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="RuleBookVersion",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("version", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.RunSQL(BUMP, UNBUMP),
    ]
