// A real OpenID provider for UMOC's tests: the certified `oidc-provider` package (npm), on 127.0.0.1.
//
//   node tests/js/oidc_provider.mjs CLIENT_ID CLIENT_SECRET REDIRECT_URI [PORT] [OPTIONS]
//
// Listens on 127.0.0.1 port PORT (0, any free port, when not given; the operator guide's worked example
// gives one), then prints one line of JSON, {"issuer": "http://127.0.0.1:PORT"}, and serves
// until stdin closes (the test ends) or it is killed.  One client is registered: the authorization code
// grant, PKCE required (S256), the secret sent in an Authorization: Basic header (client_secret_basic,
// which UMOC picks when the discovery document lists it) and REDIRECT_URI as its only redirect URI; an
// empty CLIENT_SECRET registers a public client instead (token_endpoint_auth_method none: PKCE alone).
// Sign-in is the package's development interactions (an HTML login form whose `login` becomes the account
// id, then a consent form), driven by the test with cookies as a browser would.  The account's claims:
// sub = login, preferred_username = login, name = "Login" capitalised; they travel in the ID token
// (conformIdTokenClaims: false).  The ID token is signed RS256 with a key made here, published at the
// provider's jwks_uri.  Every authorization response carries `iss` (RFC 9207), as the discovery document
// says (authorization_response_iss_parameter_supported: oidc-provider always sends it).
//
// After its first line it prints one more per token request, saying how the client authenticated (the
// provider takes client_secret_basic and client_secret_post alike from a client registered with either):
//   {"token_request": "client_secret_basic" | "client_secret_post" | "both" | "none", "status": 200}
//
// OPTIONS, a JSON object, changes the client or the claims:
//   {"token_endpoint_auth_method": "client_secret_post"}   the secret in the token request's body instead
//   {"names_in_id_token": false}   the ID token has sub alone; the names are at the userinfo endpoint
//                                  (oidc-provider's default, conformIdTokenClaims: true)

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const [clientId, clientSecret, redirectUri, port = '0', optionsJson = '{}'] = process.argv.slice(2);
if (!redirectUri) {
  process.stderr.write('usage: oidc_provider.mjs CLIENT_ID CLIENT_SECRET REDIRECT_URI [PORT] [OPTIONS]\n');
  process.exit(2);
}
const options = JSON.parse(optionsJson);
const authMethod = clientSecret ? (options.token_endpoint_auth_method ?? 'client_secret_basic') : 'none';

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'op-rsa-1', use: 'sig', alg: 'RS256' };

function account(accountId) {
  const name = accountId.charAt(0).toUpperCase() + accountId.slice(1);
  return {
    accountId,
    claims: async () => ({ sub: accountId, preferred_username: accountId, name }),
  };
}

const server = createServer();
server.listen(Number(port), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        ...(clientSecret ? { client_secret: clientSecret } : {}),
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: authMethod,
        id_token_signed_response_alg: 'RS256',
      },
    ],
    pkce: { required: () => true },
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    claims: { openid: ['sub'], profile: ['preferred_username', 'name'] },
    conformIdTokenClaims: options.names_in_id_token === false,
    findAccount: (ctx, id) => account(id),
    features: { devInteractions: { enabled: true } },
  });
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.oidc?.route === 'token') {
      const basic = /^basic /i.test(ctx.headers.authorization ?? '');
      const post = ctx.oidc.params?.client_secret !== undefined;
      const how = basic && post ? 'both' : basic ? 'client_secret_basic' : post ? 'client_secret_post' : 'none';
      process.stdout.write(`${JSON.stringify({ token_request: how, status: ctx.status })}\n`);
    }
  });
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

process.stdin.resume();
process.stdin.on('end', () => server.close(() => process.exit(0)));
process.on('SIGTERM', () => process.exit(0));
