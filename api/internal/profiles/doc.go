// Package profiles serves a user's profile and settings: the caller's own profile (GET, PUT) and
// private settings (GET, PATCH), and anyone's public profile with its rating.
//
// Both rows live on the owner's shard, keyed by the owner's ksid, and are normally created at
// registration; a missing row reads as the defaults and is created by the first write, so a user
// whose registration stopped half-way still has a working profile.
//
// Input is normalised before it is stored so every reader sees one shape: the bio is rich text
// and is sanitised; skills go through package skills (trimmed, lower-cased, deduplicated, bounded,
// no commas: the same rules as a job's); the country is an upper-case ISO 3166-1 alpha-2 code; the hourly rate is a decimal with at most two places. Limits
// are those of docs/schema.md, so a value the database would refuse is a 400 naming the field.
//
// The public profile's rating comes from a RatingSource (the reviews package), which keeps review
// statistics cached and correct; profiles only reads it.
package profiles
