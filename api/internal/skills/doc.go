// Package skills is the one definition of what a skill is, for every feature that stores or compares
// skills (a job's wanted skills, a profile's skills, the ?skills= filter of job search). Use
// Normalize on every skill list that comes from a client before storing or comparing it, so that
// search and matching can compare skills with plain equality: "Go", " go " and "GO" are one skill.
//
// A skill is trimmed, its inner white space folded to one space and lower-cased; an empty skill,
// one longer than MaxLen characters or one with a control character is refused; repeats are dropped
// (the first position is kept) and at most MaxCount distinct skills are allowed.
//
// A skill may not contain a comma. The ?skills= query parameter of job search is a comma list, so a
// stored "go,sql" could never be searched for; and a comma inside one skill is almost always a
// client that sent "go,sql" as one string where it meant two. Refusing it with a field error tells
// that client what went wrong instead of storing a skill nobody can find. (Until this package
// existed, jobs refused commas and profiles accepted them.)
package skills
