-- Secondary indexes, each with the query that needs it. Cohort queries find rare concepts in
-- big event tables and then check, per person, a date window of another concept: a
-- (concept, person, date) index answers both from the index alone (index-only scans). The
-- choice and the EXPLAIN evidence are in docs/explanation/database.md (1M persons; every index
-- below left out in turn): the per-person single-column indexes of condition_occurrence,
-- procedure_occurrence and measurement and concept_ancestor's descendant index changed no
-- cohort query's time and are not created.
-- Index events (first/all condition, procedure, measurement, observation of a concept set) and
-- the rules' EXISTS; measurement also for the resolver's labels (person IN cohort, concept IN).
CREATE INDEX IF NOT EXISTS idx_condition_concept_person_date ON @cdm_schema.condition_occurrence (condition_concept_id, person_id, condition_start_date);
CREATE INDEX IF NOT EXISTS idx_procedure_concept_person_date ON @cdm_schema.procedure_occurrence (procedure_concept_id, person_id, procedure_date);
CREATE INDEX IF NOT EXISTS idx_measurement_concept_person_date ON @cdm_schema.measurement (measurement_concept_id, person_id, measurement_date);
CREATE INDEX IF NOT EXISTS idx_observation_concept_person_date ON @cdm_schema.observation (observation_concept_id, person_id, observation_date);
-- The index event must lie in one of the person's observation periods.
CREATE INDEX IF NOT EXISTS idx_observation_period_person ON @cdm_schema.observation_period (person_id);
-- Concept sets with descendants: the descendants of the listed ancestors.
CREATE INDEX IF NOT EXISTS idx_concept_ancestor_ancestor ON @vocab_schema.concept_ancestor (ancestor_concept_id);
-- Not read by cohort queries: the resolver's images of the cohort's persons (and the image
-- rule's EXISTS), the MI-CDM joins from a procedure to its series and from a series to its
-- features, visits per person.
CREATE INDEX IF NOT EXISTS idx_image_occurrence_person ON @cdm_schema.image_occurrence (person_id);
CREATE INDEX IF NOT EXISTS idx_image_occurrence_procedure ON @cdm_schema.image_occurrence (procedure_occurrence_id);
CREATE INDEX IF NOT EXISTS idx_image_feature_occurrence ON @cdm_schema.image_feature (image_occurrence_id);
CREATE INDEX IF NOT EXISTS idx_visit_person ON @cdm_schema.visit_occurrence (person_id);
-- A cohort's rows: replaced by cohort run, read by the resolver.
CREATE INDEX IF NOT EXISTS idx_cohort_definition_subject ON @results_schema.cohort (cohort_definition_id, subject_id);
