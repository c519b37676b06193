// Starts kinesalite (the local Kinesis-API server) bound to one host, loopback by default:
// kinesalite's own cli.js always listens on every interface. Run by weir.stack:
//
//   node kinesalite_server.js <kinesalite>/cli.js --host 127.0.0.1 --port 4567 --path DATA ...
//
// The options after kinesalite's cli.js (which is only used to find the package) are kinesalite's (see its cli.js --help) plus --host.
// SIGTERM and SIGINT close the HTTP server and the LevelDB store before exiting, so the
// store is left clean; a store that is still busy after 5 s is abandoned (LevelDB's log
// already holds every acknowledged write).
'use strict'
const path = require('path')

const dir = path.dirname(path.resolve(process.argv[2]))
const minimist = require(require.resolve('minimist', { paths: [dir] }))
const options = minimist(process.argv.slice(3), { string: ['host', 'path'] })
const host = options.host || '127.0.0.1'
const server = require(path.join(dir, 'index.js'))(options)

server.listen(options.port || 4567, host, () => {
  const address = server.address()
  console.log('Listening at http://%s:%s', address.address, address.port)
})

let stopping = false
function stop(signal) {
  if (stopping) return
  stopping = true
  console.log('%s: closing the server and the store', signal)
  setTimeout(() => process.exit(0), 5000).unref()
  server.close((err) => {
    if (err) console.error('close failed: %s', err)
    process.exit(err ? 1 : 0)
  })
  if (server.closeAllConnections) server.closeAllConnections()
}
process.on('SIGTERM', () => stop('SIGTERM'))
process.on('SIGINT', () => stop('SIGINT'))
