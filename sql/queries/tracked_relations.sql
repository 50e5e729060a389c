-- Every table that must carry the tracking triggers: each registered
-- activity table and each of its partitions at any depth, with whether it is
-- the registered table itself, which registration it belongs to, and its OID.
-- (pg_partition_tree lists nothing for a plain table, hence the UNION.)
SELECT pg_catalog.format('%I.%I', n.nspname, c.relname), tree.level OPERATOR(pg_catalog.=) 0,
       t.relation::pg_catalog.oid, c.oid
  FROM followup.activity_tables AS t
 CROSS JOIN LATERAL (SELECT t.relation::pg_catalog.oid AS relid, 0 AS level
                     UNION
                     SELECT p.relid::pg_catalog.oid, p.level
                       FROM pg_catalog.pg_partition_tree(t.relation) AS p) AS tree
  JOIN pg_catalog.pg_class AS c ON c.oid = tree.relid
  JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
