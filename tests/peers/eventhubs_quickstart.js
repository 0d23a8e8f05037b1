#!/usr/bin/env node
// eventhubs_quickstart.js - the Azure Event Hubs quickstart for JavaScript, unchanged in
// shape: @azure/event-hubs's EventHubConsumerClient made from nothing but an Event Hub
// connection string (with EntityPath), subscribe() to every partition from the earliest
// event, for amqpwire's IoT Hub emulator tests.
//
//     node eventhubs_quickstart.js CONNECTION_STRING COUNT
//
// Prints one JSON line per event ({"partition", "body", "properties",
// "device"}) and exits 0 once COUNT events arrived; 1 on an error the SDK reports to
// processError (printed as {"error": ...}), or after 60 s. Trust the emulator's CA with
// NODE_EXTRA_CA_CERTS.

const { EventHubConsumerClient, earliestEventPosition } = require("@azure/event-hubs");

async function main() {
  const [connectionString, countText] = process.argv.slice(2);
  const want = Number(countText || "1");
  if (!connectionString || !(want > 0)) {
    console.error("usage: node eventhubs_quickstart.js CONNECTION_STRING COUNT");
    process.exit(2);
  }
  const consumerClient = new EventHubConsumerClient("$Default", connectionString);
  let seen = 0;
  let failed = null;
  const timer = setTimeout(() => finish("timed out after 60 s"), 60000);
  let subscription;
  async function finish(error) {
    clearTimeout(timer);
    if (subscription) await subscription.close();
    await consumerClient.close();
    if (error) {
      console.error(`eventhubs_quickstart.js: FAILED: ${error}`);
      process.exit(1);
    }
    process.exit(0);
  }
  subscription = consumerClient.subscribe(
    {
      processEvents: async (events, context) => {
        for (const event of events) {
          seen += 1;
          const body = Buffer.isBuffer(event.body) ? event.body.toString("utf8") : event.body;
          console.log(JSON.stringify({
            partition: context.partitionId,
            body,
            properties: event.properties || {},
            device: (event.systemProperties || {})["iothub-connection-device-id"] || null,
          }));
        }
        if (seen >= want && !failed) await finish(null);
      },
      processError: async (err, context) => {
        failed = `${err.code || err.name}: ${err.message} (partition ${context.partitionId})`;
        console.log(JSON.stringify({ error: failed }));
        await finish(failed);
      },
    },
    { startPosition: earliestEventPosition }
  );
}

main().catch((e) => {
  console.error(`eventhubs_quickstart.js: FAILED: ${e.stack || e}`);
  process.exit(1);
});
