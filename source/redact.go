package source

import "regexp"

var (
	// urlUserinfoRE matches the userinfo of every URL in a string, up to the
	// last '@' of the URL token: a password with an unescaped '/', '?' or '#'
	// is still hidden, at the price of hiding a host when a path or query
	// holds an '@' too.
	urlUserinfoRE = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://)[^\s"']*@`)
	// bareUserinfoRE matches "user:pass@" that starts a token without a scheme.
	bareUserinfoRE = regexp.MustCompile(`(^|[\s="'])[^\s/:@"'=]+:[^\s/@"']*@`)
	// secretParamRE matches name=value pairs whose name holds a credential,
	// in URL queries ("?token=x", "&key=y") and in GStreamer properties
	// ("user-pw=z"). Only secret names match, so that a value holding a URL
	// (location=rtsp://h/x?token=t) is not consumed before its own query.
	secretParamRE = regexp.MustCompile(`(?i)(^|[?&;\s])(` +
		`(?:password|passwd|pwd|pass|token|key|auth|secret|apikey|api_key|api-key|access_token|` +
		`user-pw|proxy-pw|signature|sig|x-amz-signature|x-amz-credential|x-amz-security-token)|` +
		`[a-z0-9_.\-]*(?:_token|-token|_key|-key|_secret|-secret|password|-pw))` +
		`=("[^"]*"|'[^']*'|[^&#\s"']*)`)
)

// Redact returns uri with credentials replaced by "***", for logs and errors:
// the userinfo of every URL in it (rtsp://user:pass@host/x becomes
// rtsp://***@host/x), including URLs inside GStreamer pipelines
// (rtspsrc location=rtsp://u:p@h ...); the values of query parameters and
// pipeline properties named password, passwd, pwd, pass, token, key, auth,
// secret (and similar: api_key, access_token, user-pw, *_token, ...); and a
// leading "user:pass@" without a scheme. Other text is kept as it is.
func Redact(uri string) string {
	out := urlUserinfoRE.ReplaceAllString(uri, "${1}***@")
	out = bareUserinfoRE.ReplaceAllString(out, "${1}***@")
	out = secretParamRE.ReplaceAllString(out, "${1}${2}=***")
	return out
}
