-- try(statement): runs a statement and reports its SQLSTATE and message
-- instead of failing, so a test can show that bad input is refused (and,
-- since the failed statement is rolled back, that it changed nothing).
-- In public, so roles a test connects as can call it too.
CREATE OR REPLACE FUNCTION public.try(statement text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
