// Package geo knows the country codes profiles and jobs are located by.
package geo

// isoCountries holds the 249 officially assigned ISO 3166-1 alpha-2 codes, concatenated in order. A
// pattern such as ^[A-Z]{2}$ (the database's CHECK) would also let through user-assigned codes
// (AA, QM–QZ, XA–XZ, ZZ) and reserved ones (EU, UK), which no address uses.
const isoCountries = "" +
	"ADAEAFAGAIALAMAOAQARASATAUAWAXAZ" +
	"BABBBDBEBFBGBHBIBJBLBMBNBOBQBRBSBTBVBWBYBZ" +
	"CACCCDCFCGCHCICKCLCMCNCOCRCUCVCWCXCYCZ" +
	"DEDJDKDMDODZ" +
	"ECEEEGEHERESET" +
	"FIFJFKFMFOFR" +
	"GAGBGDGEGFGGGHGIGLGMGNGPGQGRGSGTGUGWGY" +
	"HKHMHNHRHTHU" +
	"IDIEILIMINIOIQIRISIT" +
	"JEJMJOJP" +
	"KEKGKHKIKMKNKPKRKWKYKZ" +
	"LALBLCLILKLRLSLTLULVLY" +
	"MAMCMDMEMFMGMHMKMLMMMNMOMPMQMRMSMTMUMVMWMXMYMZ" +
	"NANCNENFNGNINLNONPNRNUNZ" +
	"OM" +
	"PAPEPFPGPHPKPLPMPNPRPSPTPWPY" +
	"QA" +
	"RERORSRURW" +
	"SASBSCSDSESGSHSISJSKSLSMSNSOSRSSSTSVSXSYSZ" +
	"TCTDTFTGTHTJTKTLTMTNTOTRTTTVTWTZ" +
	"UAUGUMUSUYUZ" +
	"VAVCVEVGVIVNVU" +
	"WFWS" +
	"YEYT" +
	"ZAZMZW"

// IsCountry reports whether code is an assigned ISO 3166-1 alpha-2 code (upper case).
func IsCountry(code string) bool {
	if len(code) != 2 {
		return false
	}
	for i := 0; i+1 < len(isoCountries); i += 2 {
		if isoCountries[i] == code[0] && isoCountries[i+1] == code[1] {
			return true
		}
	}
	return false
}
