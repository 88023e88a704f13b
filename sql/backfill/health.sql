-- What this role can read of the database's health, asked once per run. Standbys' replay
-- positions and the archive status need pg_monitor (or pg_read_all_stats / EXECUTE on
-- pg_ls_archive_statusdir); without them PostgreSQL hides the values (NULL) or refuses the
-- call even inside a CASE branch that is not taken, so each signal is read by its own query.
SELECT
    pg_has_role('pg_read_all_stats', 'USAGE') AS sees_replication,
    current_setting('archive_mode') <> 'off' AS archiving,
    has_function_privilege('pg_ls_archive_statusdir()', 'EXECUTE') AS may_list_archive,
    current_user::TEXT AS role
