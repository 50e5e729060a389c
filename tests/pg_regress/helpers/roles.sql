-- drop_roles(names): drops each of these roles that exists, with what it
-- owns, so that a test can create them afresh. Roles are cluster-wide and
-- outlive the test's database objects.
CREATE OR REPLACE FUNCTION public.drop_roles(names text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY names LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('DROP OWNED BY %I', r);
            EXECUTE format('DROP ROLE %I', r);
        END IF;
    END LOOP;
END $$;
