package synth

// cluster is one family of skills that occur together, most popular first.
type cluster struct {
	name      string
	role      string // a headline's noun: "backend developer"
	skills    []string
	neighbour int // the cluster a second speciality most often comes from
}

var catalog = []cluster{
	{"backend", "backend developer", []string{"go", "postgresql", "java", "rest api", "redis", "grpc", "microservices", "kafka", "rust", "spring"}, 5},
	{"frontend", "frontend developer", []string{"javascript", "react", "typescript", "css", "html", "vue", "next.js", "tailwind", "webpack", "accessibility"}, 6},
	{"mobile", "mobile developer", []string{"swift", "kotlin", "android", "ios", "flutter", "react native", "firebase", "swiftui", "jetpack compose", "objective-c"}, 1},
	{"data", "data engineer", []string{"python", "sql", "pandas", "spark", "airflow", "etl", "dbt", "bigquery", "snowflake", "tableau"}, 4},
	{"ml", "machine learning engineer", []string{"machine learning", "pytorch", "scikit-learn", "deep learning", "nlp", "tensorflow", "statistics", "computer vision", "llm", "mlops"}, 3},
	{"devops", "devops engineer", []string{"docker", "kubernetes", "aws", "linux", "terraform", "ci/cd", "gcp", "prometheus", "ansible", "helm"}, 0},
	{"design", "product designer", []string{"figma", "ui design", "ux research", "prototyping", "wireframing", "design systems", "photoshop", "illustrator", "branding", "motion design"}, 1},
	{"writing", "writer", []string{"copywriting", "seo", "content strategy", "editing", "technical writing", "blogging", "proofreading", "translation", "social media", "marketing"}, 6},
}

// region is one of the deployment's regions with the countries whose users live there.
type region struct {
	name      string
	countries []string
	share     float64 // of freelancers and jobs
	rate      float64 // typical hourly rate in USD
}

var regions = []region{
	{"us-east", []string{"US", "CA", "BR", "MX"}, 0.40, 75},
	{"eu-west", []string{"DE", "FR", "GB", "NL", "PL", "ES"}, 0.35, 60},
	{"ap-south", []string{"IN", "SG", "AU", "ID"}, 0.25, 35},
}

var firstNames = []string{"Ada", "Ravi", "Lena", "Tomás", "Mei", "Kwame", "Sofia", "Jonas", "Aiko", "Omar",
	"Priya", "Lucas", "Zanele", "Mateo", "Yuki", "Amara", "Felix", "Ines", "Arjun", "Nora"}

var lastNames = []string{"Okafor", "Schmidt", "Tanaka", "Silva", "Novak", "Kumar", "Dubois", "Chen", "García",
	"Andersen", "Mensah", "Rossi", "Kowalski", "Haddad", "Lindqvist", "Nakamura", "Moreau", "Singh", "Costa", "Ito"}

var jobPurposes = []string{"for a new product", "to extend an existing system", "for a short audit",
	"for a migration", "for a long-term engagement", "to help a small team ship", "for a prototype"}
