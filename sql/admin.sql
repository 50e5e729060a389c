-- Manual correction of the last contact. Implemented in src/admin.rs.

CREATE FUNCTION followup._set_last_contact(assignment_id text, contact_date date, reason text) RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', '_set_last_contact_wrapper';

CREATE FUNCTION followup.set_last_contact(assignment_id text, contact_date date, reason text)
RETURNS followup.contact_corrections
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    new_correction_id bigint;
    audit followup.contact_corrections;
BEGIN
    new_correction_id := followup._set_last_contact(assignment_id, contact_date, reason);
    SELECT * INTO audit FROM followup.contact_corrections AS c WHERE c.correction_id = new_correction_id;
    RETURN audit;
END
$$;
COMMENT ON FUNCTION followup.set_last_contact(text, date, text) IS
    'Sets an assignment''s last contact to contact_date and records who, when, from where and why.';
